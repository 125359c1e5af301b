# One image for the web server, the CPU worker and beat; the GPU worker builds
# the same file with TORCH_INDEX pointing at a CUDA build of torch.
FROM python:3.11-slim-bookworm

ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DJANGO_SETTINGS_MODULE=portal.settings \
    MEDIA_ROOT=/data/media \
    STATIC_ROOT=/app/staticfiles \
    PORTAL_VAR_DIR=/data/var

RUN apt-get update \
 && apt-get install -y --no-install-recommends libpq5 curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --create-home --uid 1000 zoo

WORKDIR /app
# torch first and from the chosen index, so the project's pin finds it installed.
RUN pip install --index-url "$TORCH_INDEX" "torch==${TORCH_VERSION}"
COPY pyproject.toml README.md ./
COPY portal ./portal
COPY zoo ./zoo
COPY governance ./governance
COPY jobs ./jobs
RUN pip install .
COPY manage.py ./
COPY templates ./templates
COPY static ./static
# collectstatic needs settings to load; the key here is a throwaway for the build step only.
RUN SECRET_KEY=build-only-collectstatic DEBUG=0 python manage.py collectstatic --noinput \
 && mkdir -p /data/media /data/var /tmp/prometheus && chown -R zoo:zoo /data /tmp/prometheus

USER zoo
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --retries=3 \
  CMD curl -fsS http://127.0.0.1:8000/healthz || exit 1
CMD ["gunicorn", "portal.wsgi:application", "--bind", "0.0.0.0:8000", "--workers", "3", "--worker-class", "gthread", "--threads", "8", "--timeout", "120"]
