# A slim, non-root image with chorus installed: the worker, Flower and the local API
# all run from it; docker-compose.yml picks the command and each service's healthcheck
# (one HEALTHCHECK here could not fit all three).

# Build the wheel in its own stage: the final image holds no source tree and no
# build tools.
FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
# .dockerignore keeps .env, .git, .venv and the tests out of the context.
COPY . .
RUN pip wheel --no-deps --wheel-dir /wheels .

FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN useradd --create-home --uid 10001 --shell /usr/sbin/nologin chorus
COPY --from=build /wheels /wheels
RUN pip install /wheels/*.whl && rm -rf /wheels /root/.cache

USER chorus
# chorus.toml, if any, is read from here (or CHORUS_CONFIG_FILE).
WORKDIR /home/chorus
# Flower, the local API.
EXPOSE 5555 8765
# One worker process (threads pool, CHORUS_WORKER__CONCURRENCY threads).
CMD ["chorus", "worker", "--processes", "1"]
