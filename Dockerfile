# The coordinator's image for docker-compose.yml: Python 3.11 with a Java runtime for spark-submit.
FROM python:3.11-slim-bookworm
RUN apt-get update && apt-get install -y --no-install-recommends openjdk-17-jre-headless procps \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY pyproject.toml README.md ./
COPY coordinator ./coordinator
COPY jobs ./jobs
COPY models ./models
COPY topics ./topics
COPY examples ./examples
RUN pip install --no-cache-dir .
EXPOSE 8765
CMD ["coord", "--help"]
