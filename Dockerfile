# One image for every role: scheduler, worker, migrate. CPU TensorFlow; for GPU workers build
# FROM a CUDA base and install tensorflow[and-cuda] instead of tensorflow-cpu.
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 TF_CPP_MIN_LOG_LEVEL=2 INITSWEEP_TF_THREADS=1
WORKDIR /app
COPY pyproject.toml README.md alembic.ini ./
COPY models ./models
COPY worker ./worker
COPY scheduler ./scheduler
COPY alembic ./alembic
COPY examples ./examples
RUN pip install --no-cache-dir -e . flower && useradd --create-home initsweep
USER initsweep
ENTRYPOINT ["initsweep"]
CMD ["--help"]
