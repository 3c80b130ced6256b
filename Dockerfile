FROM python:3.11.11-slim-bookworm

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    SPANE_WEB_HOST=0.0.0.0 \
    SPANE_WEB_PORT=8000
WORKDIR /app

# Dependencies first, from pyproject.toml alone: a change to the code reuses this layer.
COPY pyproject.toml ./
# The OTLP exporter too, so OTEL_TRACES_EXPORTER=otlp works in the image.
RUN python -c "import tomllib; p = tomllib.load(open('pyproject.toml', 'rb'))['project']; print('\n'.join(p['dependencies'] + p['optional-dependencies']['otel']))" \
        > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt

COPY README.md ./
COPY spane ./spane
RUN pip install --no-deps .
# Your node types: copy your package here and name its modules in SPANE_MODULES
# (comma-separated); the web and worker processes both import them.
COPY examples ./examples

RUN useradd --create-home --uid 10001 spane
USER spane

EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
    CMD python -c "import os, urllib.request; urllib.request.urlopen(f'http://127.0.0.1:{os.environ[\"SPANE_WEB_PORT\"]}/livez', timeout=2)"
CMD ["spane", "web"]
