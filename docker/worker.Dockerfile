# clmae-worker (the node agent) and clmae-train (one process per rank), for
# CUDA nodes and CPU slots alike.
#
#   docker build -f docker/worker.Dockerfile -t clmae-worker .
#
# The builder installs every pinned dependency with the same script as
# `make test` (scripts/install-deps.sh: Debian packages + the venv with the
# pinned PyTorch wheel) and builds the two executables against the wheel's
# LibTorch. The runtime stage is the same Debian release with the
# executables, the Debian libraries they load, and the wheel's torch/lib and
# NVIDIA libraries (CUDA runtime, cuBLAS, cuDNN, NCCL) at the paths their
# RUNPATHs name. The CUDA user-space runtime comes from the wheel, so no
# CUDA base image is needed; the NVIDIA container runtime (the GPU
# operator's toolkit) mounts the driver (libcuda) for the GPUs a pod was
# given. Runs as UID 10001 under tini, which reaps orphans and passes
# SIGTERM to the agent (the agent stops its trainers itself).
ARG DEBIAN_IMAGE=debian:bookworm-slim

FROM ${DEBIAN_IMAGE} AS build
ENV CLMAE_VENV=/opt/clmae/venv \
    CLMAE_PYTHON=/opt/clmae/venv/bin/python
WORKDIR /src
COPY deps.lock ./
COPY scripts/install-deps.sh scripts/
RUN scripts/install-deps.sh
COPY . .
RUN --mount=type=cache,target=/root/.cache/ccache \
    cmake -S . -B /build -G Ninja -DCLMAE_BUILD_TESTS=OFF \
 && cmake --build /build --target clmae-worker clmae-train \
 && site=$("$CLMAE_PYTHON" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])') \
 && docker/collect-runtime.sh /rootfs --tree "$site/torch/lib" \
      $(for lib in "$site"/nvidia/*/lib; do echo --tree "$lib"; done) \
      /build/worker/agent/clmae-worker /build/worker/train/clmae-train \
 && install -D -m 0755 /usr/bin/tini-static /rootfs/usr/bin/tini \
 && mkdir -p /rootfs/usr/share/datasets \
 && cp -a /usr/share/datasets/fashion-mnist /rootfs/usr/share/datasets/ \
 && install -D -m 0644 /etc/ssl/certs/ca-certificates.crt \
      /rootfs/etc/ssl/certs/ca-certificates.crt \
 && install -d -m 0750 -o 10001 -g 10001 /rootfs/var/lib/clmae-worker

FROM ${DEBIAN_IMAGE}
COPY --from=build /rootfs /
# Which GPUs a container sees is the device plugin's choice
# (NVIDIA_VISIBLE_DEVICES); the image only asks for the compute libraries.
ENV NVIDIA_DRIVER_CAPABILITIES=compute,utility
USER 10001:10001
WORKDIR /var/lib/clmae-worker
EXPOSE 9401 9410-9417
ENTRYPOINT ["/usr/bin/tini", "--", "/usr/local/bin/clmae-worker"]
CMD ["--work_dir=/var/lib/clmae-worker", "--trainer=/usr/local/bin/clmae-train"]
