"""What results mean, from values: theory, comparison, figures, the report; no database here.

Every function takes records, configurations or provenance as values (`scheduler.query` reads
them) and returns values, text, HTML or PNG bytes. Nothing here imports SQLAlchemy, the ORM,
click or rich (an import-rule test enforces it).
"""
