FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY spane ./spane
COPY examples ./examples
RUN pip install --no-cache-dir .
CMD ["dramatiq", "spane.actors", "examples.nodes", "--processes", "2", "--threads", "8"]
