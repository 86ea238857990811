# Codex image: the API and every worker process (docker-compose.yml picks the command).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    # The source tree below is imported, not the installed copy: templates/ and migrations/
    # sit next to app/ and are found relative to it.
    PYTHONPATH=/srv/codex

# ffmpeg/ffprobe for media ingest (jobs.md §6).
RUN apt-get update \
    && apt-get install -y --no-install-recommends ffmpeg \
    && rm -rf /var/lib/apt/lists/*

RUN useradd --create-home --uid 1000 codex
WORKDIR /srv/codex

# Only what the processes need (no .venv, var/, tests or caches from the build context).
COPY pyproject.toml README.md ./
COPY app ./app
COPY tasks ./tasks
RUN pip install .

COPY alembic.ini Procfile ./
COPY migrations ./migrations
COPY templates ./templates
RUN mkdir -p var && chown codex:codex var

USER codex
EXPOSE 5000 5555
CMD ["sh", "-c", "exec gunicorn 'app:create_app()' --workers ${WEB_CONCURRENCY:-2} --threads 4 --bind 0.0.0.0:${PORT:-5000}"]
