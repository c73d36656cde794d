# Builds the `fastfood` binary and a small image that runs it.
#   docker build -t fastfood .
#   docker run -p 7777:7777 fastfood
FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src src
COPY static static
COPY examples examples
RUN cargo build --release --locked --bin fastfood

FROM debian:bookworm-slim
RUN useradd --create-home --uid 10001 fastfood && mkdir /data && chown fastfood /data
COPY --from=build /src/target/release/fastfood /usr/local/bin/fastfood
USER fastfood
WORKDIR /home/fastfood
ENV FASTFOOD_LISTEN=0.0.0.0:7777 FASTFOOD_DATA_DIR=/data
EXPOSE 7777
VOLUME /data
ENTRYPOINT ["fastfood"]
CMD ["serve"]
