# One image for every role: scheduler, worker, migrate, dashboard. CPU TensorFlow by default;
# GPU workers: `docker build --build-arg EXTRA=gpu .` (TensorFlow's CUDA wheels; the host needs
# the NVIDIA driver and container toolkit only) and run `initsweep worker --gpu 0`.
FROM python:3.11-slim
ARG EXTRA=cpu
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 TF_CPP_MIN_LOG_LEVEL=2 INITSWEEP_TF_THREADS=1
WORKDIR /src
COPY pyproject.toml README.md alembic.ini ./
COPY initsweep ./initsweep
COPY models ./models
COPY worker ./worker
COPY scheduler ./scheduler
COPY alembic ./alembic
COPY examples /app/examples
# A regular (non-editable) install: the image runs what a wheel ships, migrations included.
RUN pip install --no-cache-dir ".[${EXTRA}]" flower && rm -rf /src && useradd --create-home initsweep
WORKDIR /app
USER initsweep
ENTRYPOINT ["initsweep"]
CMD ["--help"]
