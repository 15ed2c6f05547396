# Builds the single tsfallback binary into a small image that runs as a
# non-root user. Build: docker build -t tsfallback .
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/tsfallback ./cmd/tsfallback

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/tsfallback /usr/local/bin/tsfallback
# The callback ingester's port.
EXPOSE 8080
USER nonroot
ENTRYPOINT ["/usr/local/bin/tsfallback"]
CMD ["serve"]
