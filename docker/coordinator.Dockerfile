# clmae-coordinator, the control plane (with clmaectl, for `kubectl exec`).
#
#   docker build -f docker/coordinator.Dockerfile -t clmae-coordinator .
#
# The builder installs the pinned Debian packages with the same script as
# `make test` (scripts/install-deps.sh --debian; no PyTorch: the control
# plane links no LibTorch) and builds with CLMAE_CONTROL_PLANE_ONLY. The
# runtime stage is the same Debian release with the executables and the
# shared libraries they load and the CA bundle (HTTPS object storage for
# checkpoints), run as UID 10001.
ARG DEBIAN_IMAGE=debian:bookworm-slim

FROM ${DEBIAN_IMAGE} AS build
WORKDIR /src
COPY deps.lock ./
COPY scripts/install-deps.sh scripts/
RUN scripts/install-deps.sh --debian
COPY . .
RUN --mount=type=cache,target=/root/.cache/ccache \
    cmake -S . -B /build -G Ninja -DCLMAE_CONTROL_PLANE_ONLY=ON \
 && cmake --build /build --target clmae-coordinator clmaectl \
 && docker/collect-runtime.sh /rootfs \
      /build/services/clmae-coordinator /build/services/clmaectl/clmaectl \
 && install -D -m 0644 /etc/ssl/certs/ca-certificates.crt \
      /rootfs/etc/ssl/certs/ca-certificates.crt \
 && install -d -m 0750 -o 10001 -g 10001 /rootfs/var/lib/clmae

FROM ${DEBIAN_IMAGE}
COPY --from=build /rootfs /
# No HEALTHCHECK: Kubernetes probes the gRPC health service (grpc probe).
USER 10001:10001
WORKDIR /var/lib/clmae
EXPOSE 50051 9400
ENTRYPOINT ["/usr/local/bin/clmae-coordinator"]
CMD ["--data_dir=/var/lib/clmae"]
