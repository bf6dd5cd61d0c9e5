# A slim, non-root image with chorus installed: the worker, Flower and the
# local API all run from it (docker-compose.yml picks the command).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN useradd --create-home --uid 10001 chorus
WORKDIR /app

COPY pyproject.toml README.md ./
COPY config ./config
COPY workers ./workers
COPY orchestration ./orchestration
COPY localapi ./localapi
RUN pip install . && rm -rf /root/.cache

USER chorus
CMD ["celery", "-A", "workers", "worker", "--pool", "threads", "--concurrency", "100", "--loglevel", "INFO"]
