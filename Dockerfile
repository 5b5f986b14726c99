# One image for the worker, the CLI and the Feast feature server (see docker-compose.yml).
FROM python:3.11-slim
WORKDIR /app
ARG TORCH_SPEC="torch==2.13.0"
ARG TORCH_INDEX="https://download.pytorch.org/whl/cpu"
RUN pip install --no-cache-dir "${TORCH_SPEC}" --index-url "${TORCH_INDEX}"
COPY pyproject.toml README.md alembic.ini ./
COPY recplatform ./recplatform
COPY migrations ./migrations
COPY feature_repo ./feature_repo
RUN pip install --no-cache-dir -e .
ENTRYPOINT ["recplatform"]
