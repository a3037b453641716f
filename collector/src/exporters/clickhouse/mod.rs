//! `clickhouse`: spans, log records and metric data points into ClickHouse over its HTTP
//! interface, in the schema of the OpenTelemetry Collector's ClickHouse exporter (so Grafana's
//! ClickHouse data source and queries written for that exporter work unchanged).
//!
//! ```yaml
//! exporters:
//!   clickhouse:
//!     endpoint: http://localhost:8123   # or https://host:8443 (system root certificates)
//!     # tls: { ca_file: ca.pem, cert_file: client.pem, key_file: client-key.pem }  # https only
//!     database: otel                    # default "default"
//!     username: ${env:CH_USER}
//!     password: ${env:CH_PASSWORD}
//!     traces_table_name: otel_traces    # + otel_traces_trace_id_ts and its view
//!     logs_table_name: otel_logs
//!     metrics_tables:                   # the Collector's defaults:
//!       gauge: { name: otel_metrics_gauge }
//!       sum: { name: otel_metrics_sum }
//!       histogram: { name: otel_metrics_histogram }
//!       exponential_histogram: { name: otel_metrics_exponential_histogram }
//!       summary: { name: otel_metrics_summary }
//!     create_schema: true
//!     ttl: 72h                          # table TTL; 0 (default) keeps rows forever
//!     # cluster_name: my_cluster        # ON CLUSTER DDL, Distributed tables over *_local ones
//!     # table_engine: { name: ReplicatedMergeTree }
//!     span_metrics_tables: true         # 30 s counts/durations, rolled up to 10 min
//!     trace_analysis_tables: true       # findings, dependencies, critical path (metrics)
//!     async_insert: false               # true: async_insert=1 & wait_for_async_insert=1
//!     compress: lz4                     # lz4 (default), zstd, gzip, none
//!     timeout: 5s
//!     batch: { max_rows: 100000, max_bytes: 16MiB, timeout: 5s }
//!     sending_queue: { num_consumers: 2, queue_size: 100 }
//!     retry_on_failure: { initial_interval: 1s, max_elapsed_time: 300s }
//! ```
//!
//! Modules: [`config`] (options and validation), [`schema`] (DDL), [`rows`] (RowBinary
//! encoding of decoded spans, and the value and attribute encoders every signal's rows use),
//! [`rows_wire`] (the spans' rows straight from the received protobuf, without decoding it:
//! the usual path for traces), [`rows_logs`] and [`rows_logs_wire`] (log records' rows, from
//! decoded batches and from the received protobuf, the usual path), [`rows_metrics`] (data
//! points' rows, from decoded batches), [`client`] (the HTTP subset spoken), [`sender`] (one
//! insert per table per attempt), [`batcher`] (rows/bytes/time batching in front of the shared
//! sending queue). Each signal has its own client, batcher and queue, as every exporter.
//!
//! Delivery: an insert is built once, with a random `insert_deduplication_token`, and every
//! retry sends the same bytes with the same token, so a retry of an insert the server wrote
//! (but whose answer was lost) is dropped by the server instead of duplicating rows. Plain
//! `MergeTree` tables are created with `non_replicated_deduplication_window` for that;
//! Replicated ones deduplicate by default. Errors are retried when ClickHouse says the state is
//! passing (too many parts, memory, timeouts, Keeper) or nothing answered; the rest (syntax,
//! unknown table, authentication, bad data) are permanent and logged with the server's message.
//! A TLS handshake that fails on a certificate (the server's is not trusted, or ours is
//! refused) is permanent too: at start it stops the collector (like a refused login), later each
//! batch fails once with the certificate error and the `tls.*` option to fix, instead of
//! retrying a handshake that cannot succeed.

pub mod batcher;
pub mod client;
pub mod config;
pub mod rows;
pub mod rows_logs;
pub mod rows_logs_wire;
#[cfg(test)]
mod rows_logs_wire_tests;
pub mod rows_metrics;
#[cfg(test)]
mod rows_signals_tests;
pub mod rows_wire;
#[cfg(test)]
mod rows_wire_tests;
pub mod schema;
pub mod sender;
#[cfg(test)]
mod tests;

pub use config::{BatchConfig, ClickHouseExporterConfig, Compress, TableEngine};
pub use schema::{INSERT_COLUMNS, LOGS_COLUMNS, MetricsTables, Schema, Table};
