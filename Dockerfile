# syntax=docker/dockerfile:1
# The one image for every Sluice process: `sluice serve`, `sluice worker`, `sluice migrate`.

# The web app (web/), built with Node; only its static files go into the image.
FROM node:20-slim AS web
WORKDIR /web
COPY web/package.json web/package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY web/ ./
RUN npm run build

FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /srv/sluice

# Dependencies first, from pyproject.toml alone, so code changes don't reinstall them.
COPY pyproject.toml ./
RUN mkdir -p app workers db \
    && touch app/__init__.py workers/__init__.py db/__init__.py \
    && pip install . \
    && pip uninstall -y sluice \
    && rm -rf app workers db build *.egg-info

# Then the project itself (migrations ship inside the db package).
COPY app ./app
COPY workers ./workers
COPY db ./db
COPY alembic.ini ./
RUN pip install --no-deps . && rm -rf build *.egg-info
# Served at / by `sluice serve` (SLUICE_WEB_DIST is relative to this working directory).
COPY --from=web /web/dist ./web/dist

RUN useradd --system --uid 10001 --user-group --no-create-home --home-dir /nonexistent sluice
USER sluice

# No HEALTHCHECK here: the same image runs the worker and the one-shot migrate job, which serve
# no HTTP. compose.yaml gives the api service its own check on /health.
EXPOSE 8000

ENTRYPOINT ["sluice"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8000"]
