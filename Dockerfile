# One image, two commands: the api (default) and the worker (`python -m worker`).
# BASE: python:3.11-slim runs the CUDA build of torch from PyPI on a GPU host (the wheel bundles CUDA);
# TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu gives a small CPU-only image.
ARG BASE=python:3.11-slim
FROM ${BASE}
ARG TORCH_INDEX_URL=
RUN apt-get update && apt-get install -y --no-install-recommends libsndfile1 \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /srv
COPY pyproject.toml constraints.txt README.md ./
COPY soundcheck ./soundcheck
COPY app ./app
COPY worker ./worker
RUN pip install --no-cache-dir ${TORCH_INDEX_URL:+--extra-index-url ${TORCH_INDEX_URL}} -c constraints.txt '.[all]' \
    && useradd --create-home --uid 1000 soundcheck && mkdir -p /data /models && chown soundcheck /data
USER soundcheck
ENV SOUNDCHECK_DATA_DIR=/data \
    SOUNDCHECK_MODEL_DIR=/models \
    SOUNDCHECK_API_HOST=0.0.0.0 \
    PYTHONUNBUFFERED=1
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --retries=3 \
  CMD python -c "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/v1/health').status != 200)"
CMD ["python", "-m", "uvicorn", "--factory", "app.main:app_factory", "--host", "0.0.0.0", "--port", "8000"]
