# One image for the worker, the CLI and the Feast feature server (see docker-compose.yml). It installs the built
# wheel, as a user would: migrations, SQL function files and the Feast repository are package data, so nothing
# from the checkout is needed at run time (the same wheel CI tests with .ci/wheel_smoke.sh).
FROM python:3.11-slim AS wheel
WORKDIR /src
RUN pip install --no-cache-dir build
COPY pyproject.toml README.md ./
COPY recplatform ./recplatform
RUN python -m build --wheel --outdir /dist

FROM python:3.11-slim
ARG TORCH_SPEC="torch==2.13.0"
ARG TORCH_INDEX="https://download.pytorch.org/whl/cpu"
RUN pip install --no-cache-dir "${TORCH_SPEC}" --index-url "${TORCH_INDEX}"
COPY --from=wheel /dist/ /tmp/dist/
RUN pip install --no-cache-dir /tmp/dist/recplatform-*.whl && rm -rf /tmp/dist
WORKDIR /app
ENTRYPOINT ["recplatform"]
