# The processor (and the mock provider: same image, `aigw mock`).
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml constraints.txt README.md ./
COPY extproc ./extproc
RUN pip install --no-cache-dir -c constraints.txt . \
 && mkdir -p /run/aigw && chown 101:101 /run/aigw
# Presidio's tldextract must not reach for the network.
ENV TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS=""
# The official Envoy image runs Envoy as uid 101; the socket must be reachable by it.
USER 101
ENTRYPOINT ["aigw"]
CMD ["serve", "--bootstrap", "/etc/envoy/envoy.yaml", "--log-format", "json"]
