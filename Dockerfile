# One image for every Python service (agent, avatar, admin API and its Celery worker).
FROM python:3.11-slim-bookworm
RUN apt-get update && apt-get install -y --no-install-recommends espeak-ng ffmpeg libgl1 libglib2.0-0 postgresql-client \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY pyproject.toml README.md ./
COPY agent agent
COPY avatar avatar
COPY dialogue dialogue
COPY admin admin
COPY migrations migrations
COPY alembic.ini ./
COPY scripts scripts
RUN pip install --no-cache-dir -e ".[all]" && python scripts/setup_models.py --dest /models
ENV DH_MODELS_DIR=/models HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
