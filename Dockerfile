# kaito-ctrl controller image: multi-stage, slim Python, non-root, read-only friendly.
# Build: docker build -t kaito-ctrl:0.1.0 .
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml setup.py MANIFEST.in README.md ./
COPY kaito_ctrl ./kaito_ctrl
# The wheel carries the templates and CRDs as package data (setup.py), so the image needs no copy of its own.
COPY templates ./templates
COPY manifests/crds ./manifests/crds
COPY manifests/tuning-params.yaml ./manifests/
RUN pip install --no-cache-dir build==1.2.2 && python -m build --wheel --outdir /dist

FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    KAITO_LOG_FORMAT=json
COPY --from=build /dist/*.whl /tmp/
RUN pip install --no-cache-dir /tmp/*.whl && rm -f /tmp/*.whl \
    && groupadd --gid 65532 kaito && useradd --uid 65532 --gid 65532 --no-create-home --shell /usr/sbin/nologin kaito
USER 65532:65532
EXPOSE 8080 8081 9443
ENTRYPOINT ["kaito-ctrl", "run"]
