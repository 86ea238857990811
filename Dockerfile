# Codex image: the API and every worker process. Each container runs one Procfile process by
# name (scripts/procfile-exec.sh), so the image and docker-compose.yml cannot drift from the Procfile.
# Pinned base (exact Python patch release and Debian release), like every image in docker-compose.yml.
FROM python:3.11.16-slim-bookworm

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

# Dependencies first, from the lock file alone (every package pinned and hash-checked): this
# layer is rebuilt only when requirements.lock changes, not on every code edit.
COPY requirements.lock ./
RUN pip install --require-hashes -r requirements.lock

# Then the project itself, without resolving anything again.
COPY pyproject.toml README.md ./
COPY app ./app
COPY tasks ./tasks
RUN pip install --no-deps .

COPY alembic.ini Procfile ./
COPY migrations ./migrations
COPY templates ./templates
COPY scripts/procfile-exec.sh ./scripts/
RUN mkdir -p var && chown codex:codex var

USER codex
EXPOSE 5000 5555
# Liveness of the web process (docker-compose.yml gives the workers, beat and flower their own).
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request as u; u.urlopen('http://127.0.0.1:%s/health' % os.environ.get('PORT', '5000'), timeout=4)"]
CMD ["/srv/codex/scripts/procfile-exec.sh", "web"]
