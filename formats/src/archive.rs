//! The Parquet archive encoding: Kafka record batches in, one Arrow table out, written as a
//! Parquet file any engine can read (DuckDB, Spark, Trino, DataFusion, pyarrow).
//!
//! # Schema (format 1)
//! One row per data record, in offset order. Control records are left out.
//!
//! | column                          | type                                  | notes                                 |
//! |---------------------------------|---------------------------------------|---------------------------------------|
//! | `offset`                        | int64                                 | statistics: prune by offset           |
//! | `timestamp`                     | timestamp(ms, UTC)                    | as consumers see it; statistics       |
//! | `timestamp_type`                | utf8                                  | `CreateTime` or `LogAppendTime`       |
//! | `key`, `value`                  | binary, nullable                      | decompressed, as produced             |
//! | `headers`                       | list<struct<key: utf8, value: binary>>| key decoded as UTF-8 (lossy, as Java) |
//! | `producer_id`, `producer_epoch` | int64, int16                          | -1 when not idempotent                |
//! | `sequence`                      | int32                                 | the record's own sequence, or -1      |
//! | `batch_base_offset`             | int64                                 | with the five below, enough to        |
//! | `batch_last_offset_delta`       | int32                                 | rebuild each batch's header (the CRC  |
//! | `batch_partition_leader_epoch`  | int32                                 | is recomputed); the codec is in       |
//! | `batch_attributes`              | int16                                 | the low three attribute bits          |
//! | `batch_base_timestamp`          | int64 (ms)                            |                                       |
//! | `batch_max_timestamp`           | int64 (ms)                            |                                       |
//! | `value_json`                    | struct of typed fields, optional      | see [`JsonProjection`]                |
//!
//! The schema depends only on the topic's configuration, never on the data: a record that does
//! not parse as JSON gets nulls in `value_json` and keeps its raw `value`; no batch is ever
//! refused. Files are ZSTD-compressed, with statistics and page indexes on every column but the
//! payloads (`key`, `value`, header values), and declare themselves sorted by `offset`. The file's
//! key-value metadata names the topic, its id, the partition and this format version.

use std::collections::HashMap;
use std::fmt;
use std::io::Write;
use std::sync::Arc;

use arrow_array::builder::ArrayBuilder;
use arrow_array::builder::{
    BinaryBuilder, BooleanBuilder, Float64Builder, Int16Builder, Int32Builder, Int64Builder,
    ListBuilder, StringBuilder, StructBuilder, TimestampMillisecondBuilder,
};
use arrow_array::{Array, ArrayRef, Int64Array, RecordBatch};
use arrow_schema::{DataType, Field, Fields, Schema, SchemaRef, TimeUnit};
use bytes::Bytes;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression as ParquetCompression, ZstdLevel};
use parquet::file::metadata::{KeyValue, SortingColumn};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;

use crate::batch::{increment_sequence, BatchError, RecordBatchHeader, TimestampType, NO_SEQUENCE};
use crate::ids::Offset;
use crate::record::decode_records_bytes;

/// The archive's format version, in every file's key-value metadata (`shale.archive.format`).
pub const ARCHIVE_FORMAT: &str = "1";

/// Rows buffered before they are handed to the Parquet encoder as one Arrow batch.
const ROWS_PER_ARROW_BATCH: usize = 8192;
/// Or bytes of keys and values, whichever comes first.
const BYTES_PER_ARROW_BATCH: usize = 8 * 1024 * 1024;
/// About what one row takes in the fixed-width columns (offset, timestamps, producer and batch
/// fields), beside its payload: sizes the slices handed to the Parquet writer.
const FIXED_ROW_BYTES: usize = 64;

/// Why a batch or a file could not be archived.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("record batch at offset {base_offset}: {source}")]
    Batch {
        base_offset: Offset,
        #[source]
        source: BatchError,
    },
    #[error("parquet: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
    #[error("arrow: {0}")]
    Arrow(#[from] arrow_schema::ArrowError),
    #[error("{0}")]
    Invalid(String),
}

/// The JSON types a projected field can have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JsonKind {
    /// A JSON string; any other JSON value is kept as its JSON text.
    String,
    /// A JSON integer that fits in an i64; anything else is null.
    Long,
    /// Any JSON number; anything else is null.
    Double,
    /// `true` / `false`; anything else is null.
    Boolean,
    /// Any JSON value, as its JSON text (objects and arrays included).
    Json,
}

impl JsonKind {
    fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "string" => Self::String,
            "long" | "int64" | "bigint" => Self::Long,
            "double" | "float64" => Self::Double,
            "boolean" | "bool" => Self::Boolean,
            "json" => Self::Json,
            _ => return None,
        })
    }

    fn data_type(self) -> DataType {
        match self {
            Self::String | Self::Json => DataType::Utf8,
            Self::Long => DataType::Int64,
            Self::Double => DataType::Float64,
            Self::Boolean => DataType::Boolean,
        }
    }
}

/// Top-level fields of JSON record values, projected into typed columns of the struct column
/// `value_json`, beside the raw `value`. Declared per topic (`archive.json.fields`), so the
/// schema is the same for every file whatever the data holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonProjection {
    fields: Vec<(String, JsonKind)>,
    index: HashMap<String, usize>,
}

impl JsonProjection {
    /// Parses `name:type,name:type,…` with types `string`, `long`, `double`, `boolean`, `json`.
    /// An empty spec means no projection (`Ok(None)`).
    pub fn parse(spec: &str) -> Result<Option<Self>, String> {
        let mut fields = Vec::new();
        let mut index = HashMap::new();
        for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, kind) = part
                .rsplit_once(':')
                .ok_or_else(|| format!("`{part}` is not NAME:TYPE"))?;
            let name = name.trim();
            if name.is_empty() {
                return Err(format!("`{part}` has an empty field name"));
            }
            let kind = JsonKind::parse(kind.trim()).ok_or_else(|| {
                format!(
                    "`{}` in `{part}` is not a type; use string, long, double, boolean or json",
                    kind.trim()
                )
            })?;
            if index.insert(name.to_string(), fields.len()).is_some() {
                return Err(format!("the field `{name}` is listed twice"));
            }
            fields.push((name.to_string(), kind));
        }
        Ok((!fields.is_empty()).then_some(Self { fields, index }))
    }

    fn struct_fields(&self) -> Fields {
        self.fields
            .iter()
            .map(|(name, kind)| Field::new(name, kind.data_type(), true))
            .collect()
    }
}

impl fmt::Display for JsonProjection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (name, kind)) in self.fields.iter().enumerate() {
            let kind = match kind {
                JsonKind::String => "string",
                JsonKind::Long => "long",
                JsonKind::Double => "double",
                JsonKind::Boolean => "boolean",
                JsonKind::Json => "json",
            };
            write!(f, "{}{name}:{kind}", if i == 0 { "" } else { "," })?;
        }
        Ok(())
    }
}

fn header_struct_fields() -> Fields {
    Fields::from(vec![
        Field::new("key", DataType::Utf8, false),
        Field::new("value", DataType::Binary, true),
    ])
}

/// The Arrow schema of an archive file (see the module docs).
pub fn schema(projection: Option<&JsonProjection>) -> SchemaRef {
    let headers_item = Field::new("item", DataType::Struct(header_struct_fields()), false);
    let mut fields = vec![
        Field::new("offset", DataType::Int64, false),
        Field::new(
            "timestamp",
            DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
            false,
        ),
        Field::new("timestamp_type", DataType::Utf8, false),
        Field::new("key", DataType::Binary, true),
        Field::new("value", DataType::Binary, true),
        Field::new("headers", DataType::List(Arc::new(headers_item)), false),
        Field::new("producer_id", DataType::Int64, false),
        Field::new("producer_epoch", DataType::Int16, false),
        Field::new("sequence", DataType::Int32, false),
        Field::new("batch_base_offset", DataType::Int64, false),
        Field::new("batch_last_offset_delta", DataType::Int32, false),
        Field::new("batch_partition_leader_epoch", DataType::Int32, false),
        Field::new("batch_attributes", DataType::Int16, false),
        Field::new("batch_base_timestamp", DataType::Int64, false),
        Field::new("batch_max_timestamp", DataType::Int64, false),
    ];
    if let Some(projection) = projection {
        fields.push(Field::new(
            "value_json",
            DataType::Struct(projection.struct_fields()),
            true,
        ));
    }
    Arc::new(Schema::new(fields))
}

/// Settings of one archive file.
#[derive(Debug, Clone)]
pub struct ArchiveOptions {
    pub projection: Option<Arc<JsonProjection>>,
    /// Bytes a compressed batch may decompress to; a batch that would exceed it is an error.
    pub max_decompressed: usize,
    /// Row groups close at this estimated encoded size (and at 1Mi rows): the unit engines
    /// skip or read in parallel, and the memory the writer holds.
    pub row_group_bytes: usize,
    /// ZSTD level (1–22). Archives are written once and kept long: 3 is zstd's own default.
    pub zstd_level: i32,
    /// Written into the file's key-value metadata (topic, topic id, partition…).
    pub metadata: Vec<(String, String)>,
}

impl Default for ArchiveOptions {
    fn default() -> Self {
        Self {
            projection: None,
            max_decompressed: 64 * 1024 * 1024,
            row_group_bytes: 64 * 1024 * 1024,
            zstd_level: 3,
            metadata: Vec::new(),
        }
    }
}

/// What went into a file so far.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FileStats {
    /// Rows (data records) written.
    pub rows: u64,
    /// Bytes of record batches consumed, as stored in the log.
    pub input_bytes: u64,
    /// The first and last offsets the file covers: from the first batch consumed to the last
    /// offset of the last one, control batches included.
    pub first_offset: Option<Offset>,
    pub last_offset: Option<Offset>,
    /// The lowest offset of a row, if any row was written.
    pub min_row_offset: Option<Offset>,
    /// Record timestamps (ms) of the rows, if any.
    pub min_timestamp: Option<i64>,
    pub max_timestamp: Option<i64>,
    /// Records whose value was not a JSON object although a projection is configured.
    pub json_invalid: u64,
    /// Control records left out.
    pub control_records: u64,
}

/// Writes one Parquet archive file into `W` from record batches appended in offset order.
pub struct ArchiveWriter<W: Write + Send> {
    writer: ArrowWriter<W>,
    rows: RowBuilder,
    options: ArchiveOptions,
    stats: FileStats,
}

impl<W: Write + Send> ArchiveWriter<W> {
    pub fn new(sink: W, options: ArchiveOptions) -> Result<Self, ArchiveError> {
        let schema = schema(options.projection.as_deref());
        let zstd = ZstdLevel::try_new(options.zstd_level)?;
        let mut metadata: Vec<KeyValue> = options
            .metadata
            .iter()
            .map(|(k, v)| KeyValue::new(k.clone(), v.clone()))
            .collect();
        metadata.push(KeyValue::new(
            "shale.archive.format".to_string(),
            ARCHIVE_FORMAT.to_string(),
        ));
        if let Some(projection) = &options.projection {
            metadata.push(KeyValue::new(
                "shale.archive.json_fields".to_string(),
                projection.to_string(),
            ));
        }
        let payload = |path: &[&str]| ColumnPath::new(path.iter().map(|s| s.to_string()).collect());
        let props = WriterProperties::builder()
            .set_compression(ParquetCompression::ZSTD(zstd))
            .set_max_row_group_bytes(Some(options.row_group_bytes.max(1)))
            .set_max_row_group_row_count(Some(1024 * 1024))
            .set_statistics_enabled(EnabledStatistics::Page)
            .set_statistics_truncate_length(Some(64))
            .set_column_index_truncate_length(Some(64))
            .set_sorting_columns(Some(vec![SortingColumn {
                column_idx: 0,
                descending: false,
                nulls_first: false,
            }]))
            .set_key_value_metadata(Some(metadata))
            .set_created_by(format!("shale {} (parquet-rs)", env!("CARGO_PKG_VERSION")))
            // Payloads: min/max of opaque bytes prune nothing and cost time and footer space;
            // values are rarely repeated, so a dictionary is work thrown away.
            .set_column_statistics_enabled(payload(&["key"]), EnabledStatistics::None)
            .set_column_statistics_enabled(payload(&["value"]), EnabledStatistics::None)
            .set_column_dictionary_enabled(payload(&["value"]), false)
            .set_column_statistics_enabled(
                payload(&["headers", "list", "item", "value"]),
                EnabledStatistics::None,
            )
            .build();
        let writer = ArrowWriter::try_new(sink, schema.clone(), Some(props))?;
        Ok(Self {
            writer,
            rows: RowBuilder::new(schema, options.projection.clone()),
            options,
            stats: FileStats::default(),
        })
    }

    /// Appends the records of one whole stored batch with offsets ≥ `min_offset` (a file may
    /// start inside a batch when DeleteRecords moved the log start there). The batch's CRC is
    /// checked: the archive never copies corrupt data silently.
    pub fn append_batch(&mut self, batch: &Bytes, min_offset: Offset) -> Result<(), ArchiveError> {
        let header = RecordBatchHeader::parse(batch).map_err(|source| ArchiveError::Batch {
            base_offset: Offset::UNKNOWN,
            source,
        })?;
        let fail = |source| ArchiveError::Batch {
            base_offset: header.base_offset,
            source,
        };
        crate::batch::validate_batch(batch, &crate::batch::ValidateOptions::stored())
            .map_err(fail)?;
        if header.last_offset() < min_offset {
            return Ok(());
        }
        // Decode before touching the stats: a batch that cannot be decoded (bad compressed
        // data, over `max_decompressed`) must leave the file as it was, or `last_offset` would
        // claim offsets that have no rows.
        let records = if header.is_control() {
            Vec::new()
        } else {
            decode_records_bytes(batch, self.options.max_decompressed).map_err(fail)?
        };
        self.stats
            .first_offset
            .get_or_insert(header.base_offset.max(min_offset));
        self.stats.last_offset = Some(header.last_offset());
        self.stats.input_bytes += batch.len() as u64;
        if header.is_control() {
            self.stats.control_records += header.records_count.max(0) as u64;
            return Ok(());
        }
        let timestamp_type = match header.timestamp_type() {
            TimestampType::CreateTime => "CreateTime",
            TimestampType::LogAppendTime => "LogAppendTime",
        };
        for record in &records {
            let offset = record.offset(header.base_offset);
            if offset < min_offset {
                continue;
            }
            let timestamp = record.timestamp(&header);
            let sequence = if header.base_sequence == NO_SEQUENCE {
                NO_SEQUENCE
            } else {
                increment_sequence(header.base_sequence, record.offset_delta)
            };
            let stats = &mut self.stats;
            stats.rows += 1;
            stats.min_row_offset.get_or_insert(offset);
            stats.min_timestamp = Some(stats.min_timestamp.map_or(timestamp, |t| t.min(timestamp)));
            stats.max_timestamp = Some(stats.max_timestamp.map_or(timestamp, |t| t.max(timestamp)));
            if !self
                .rows
                .push(&header, timestamp_type, offset, timestamp, sequence, record)
            {
                stats.json_invalid += 1;
            }
        }
        if self.rows.len() >= ROWS_PER_ARROW_BATCH
            || self.rows.payload_bytes >= BYTES_PER_ARROW_BATCH
        {
            self.flush_rows()?;
        }
        Ok(())
    }

    /// Appends rows of an existing archive file (a rewrite that drops rows below a new log start
    /// offset). The batch must have this writer's schema.
    pub fn append_rows(&mut self, rows: &RecordBatch) -> Result<(), ArchiveError> {
        self.flush_rows()?;
        if rows.num_rows() == 0 {
            return Ok(());
        }
        let offsets = offset_column(rows)?;
        let timestamps = rows
            .column_by_name("timestamp")
            .and_then(|c| {
                c.as_any()
                    .downcast_ref::<arrow_array::TimestampMillisecondArray>()
            })
            .ok_or_else(|| ArchiveError::Invalid("no timestamp column".to_string()))?;
        let stats = &mut self.stats;
        stats.rows += rows.num_rows() as u64;
        let first = Offset::new(offsets.value(0));
        stats.first_offset.get_or_insert(first);
        stats.min_row_offset.get_or_insert(first);
        stats.last_offset = Some(Offset::new(offsets.value(offsets.len() - 1)));
        for t in timestamps.iter().flatten() {
            stats.min_timestamp = Some(stats.min_timestamp.map_or(t, |m| m.min(t)));
            stats.max_timestamp = Some(stats.max_timestamp.map_or(t, |m| m.max(t)));
        }
        self.write_sliced(rows, rows.get_array_memory_size())
    }

    /// What went in so far.
    pub fn stats(&self) -> &FileStats {
        &self.stats
    }

    /// Bytes handed to the sink so far plus the estimated size of the row group in progress,
    /// rows not yet handed to the Parquet encoder included (before compression).
    pub fn estimated_size(&self) -> usize {
        self.writer.bytes_written()
            + self.writer.in_progress_size()
            + self.rows.payload_bytes
            + self.rows.len() * FIXED_ROW_BYTES
    }

    fn flush_rows(&mut self) -> Result<(), ArchiveError> {
        if self.rows.len() > 0 {
            // Keys, values and headers, plus about what the fixed-width columns take.
            let bytes = self.rows.payload_bytes + self.rows.len() * FIXED_ROW_BYTES;
            let batch = self.rows.finish()?;
            self.write_sliced(&batch, bytes)?;
        }
        Ok(())
    }

    /// Hands `batch` (about `bytes` big) to the Parquet writer in slices of at most a quarter of
    /// a row group. The writer closes a row group only between the batches it is given, and puts
    /// the first batch of a row group in whole: one large batch would make one large row group
    /// whatever `row_group_bytes` says.
    fn write_sliced(&mut self, batch: &RecordBatch, bytes: usize) -> Result<(), ArchiveError> {
        let rows = batch.num_rows();
        if rows == 0 {
            return Ok(());
        }
        let slice_bytes = (self.options.row_group_bytes / 4).max(1);
        let row_bytes = (bytes / rows).max(1);
        let step = (slice_bytes / row_bytes).clamp(1, rows);
        let mut start = 0;
        while start < rows {
            let len = step.min(rows - start);
            self.writer.write(&batch.slice(start, len))?;
            start += len;
        }
        Ok(())
    }

    /// Writes the last row group and the footer, and returns the sink.
    pub fn finish(mut self) -> Result<(W, FileStats), ArchiveError> {
        self.flush_rows()?;
        let sink = self.writer.into_inner()?;
        Ok((sink, self.stats))
    }
}

fn offset_column(rows: &RecordBatch) -> Result<&Int64Array, ArchiveError> {
    rows.column_by_name("offset")
        .and_then(|c| c.as_any().downcast_ref::<Int64Array>())
        .ok_or_else(|| ArchiveError::Invalid("no int64 offset column".to_string()))
}

/// The rows of `rows` with offset ≥ `min_offset` (rows are in offset order).
pub fn rows_from(rows: &RecordBatch, min_offset: Offset) -> Result<RecordBatch, ArchiveError> {
    let offsets = offset_column(rows)?;
    let start = offsets.values().partition_point(|&o| o < min_offset.get());
    Ok(rows.slice(start, rows.num_rows() - start))
}

/// Reads a whole archive file held in memory: its schema's batches, in order.
pub fn read_file(file: Bytes) -> Result<Vec<RecordBatch>, ArchiveError> {
    let reader =
        parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)?.build()?;
    reader
        .collect::<Result<Vec<_>, _>>()
        .map_err(ArchiveError::from)
}

/// The key-value metadata of an archive file held in memory.
pub fn read_key_value_metadata(file: &Bytes) -> Result<Vec<(String, String)>, ArchiveError> {
    let builder =
        parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file.clone())?;
    Ok(builder
        .metadata()
        .file_metadata()
        .key_value_metadata()
        .map(|kv| {
            kv.iter()
                .map(|e| (e.key.clone(), e.value.clone().unwrap_or_default()))
                .collect()
        })
        .unwrap_or_default())
}

/// Column builders for one Arrow batch of rows.
struct RowBuilder {
    schema: SchemaRef,
    projection: Option<Arc<JsonProjection>>,
    offset: Int64Builder,
    timestamp: TimestampMillisecondBuilder,
    timestamp_type: StringBuilder,
    key: BinaryBuilder,
    value: BinaryBuilder,
    headers: ListBuilder<StructBuilder>,
    producer_id: Int64Builder,
    producer_epoch: Int16Builder,
    sequence: Int32Builder,
    batch_base_offset: Int64Builder,
    batch_last_offset_delta: Int32Builder,
    batch_partition_leader_epoch: Int32Builder,
    batch_attributes: Int16Builder,
    batch_base_timestamp: Int64Builder,
    batch_max_timestamp: Int64Builder,
    value_json: Option<StructBuilder>,
    payload_bytes: usize,
}

impl RowBuilder {
    fn new(schema: SchemaRef, projection: Option<Arc<JsonProjection>>) -> Self {
        let headers =
            ListBuilder::new(StructBuilder::from_fields(header_struct_fields(), 0)).with_field(
                Field::new("item", DataType::Struct(header_struct_fields()), false),
            );
        let value_json = projection
            .as_ref()
            .map(|p| StructBuilder::from_fields(p.struct_fields(), 0));
        Self {
            schema,
            projection,
            offset: Int64Builder::new(),
            timestamp: TimestampMillisecondBuilder::new().with_timezone("UTC"),
            timestamp_type: StringBuilder::new(),
            key: BinaryBuilder::new(),
            value: BinaryBuilder::new(),
            headers,
            producer_id: Int64Builder::new(),
            producer_epoch: Int16Builder::new(),
            sequence: Int32Builder::new(),
            batch_base_offset: Int64Builder::new(),
            batch_last_offset_delta: Int32Builder::new(),
            batch_partition_leader_epoch: Int32Builder::new(),
            batch_attributes: Int16Builder::new(),
            batch_base_timestamp: Int64Builder::new(),
            batch_max_timestamp: Int64Builder::new(),
            value_json,
            payload_bytes: 0,
        }
    }

    fn len(&self) -> usize {
        self.offset.len()
    }

    /// Appends one row; false if a projection is configured and the value is not a JSON object.
    fn push(
        &mut self,
        header: &RecordBatchHeader,
        timestamp_type: &str,
        offset: Offset,
        timestamp: i64,
        sequence: i32,
        record: &crate::record::Record,
    ) -> bool {
        self.offset.append_value(offset.get());
        self.timestamp.append_value(timestamp);
        self.timestamp_type.append_value(timestamp_type);
        self.key.append_option(record.key.as_deref());
        self.value.append_option(record.value.as_deref());
        self.payload_bytes += record.key.as_ref().map_or(0, |k| k.len())
            + record.value.as_ref().map_or(0, |v| v.len());
        let entries = self.headers.values();
        for h in &record.headers {
            entries
                .field_builder::<StringBuilder>(0)
                .expect("header key builder")
                .append_value(String::from_utf8_lossy(&h.key));
            entries
                .field_builder::<BinaryBuilder>(1)
                .expect("header value builder")
                .append_option(h.value.as_deref());
            entries.append(true);
            self.payload_bytes += h.key.len() + h.value.as_ref().map_or(0, |v| v.len());
        }
        self.headers.append(true);
        self.producer_id.append_value(header.producer_id.get());
        self.producer_epoch
            .append_value(header.producer_epoch.get());
        self.sequence.append_value(sequence);
        self.batch_base_offset
            .append_value(header.base_offset.get());
        self.batch_last_offset_delta
            .append_value(header.last_offset_delta);
        self.batch_partition_leader_epoch
            .append_value(header.partition_leader_epoch.get());
        self.batch_attributes.append_value(header.attributes);
        self.batch_base_timestamp
            .append_value(header.base_timestamp);
        self.batch_max_timestamp.append_value(header.max_timestamp);
        match (&self.projection, &mut self.value_json) {
            (Some(projection), Some(builder)) => {
                project_json(projection, record.value.as_deref(), builder)
            }
            _ => true,
        }
    }

    fn finish(&mut self) -> Result<RecordBatch, ArchiveError> {
        let mut columns: Vec<ArrayRef> = vec![
            Arc::new(self.offset.finish()),
            Arc::new(self.timestamp.finish()),
            Arc::new(self.timestamp_type.finish()),
            Arc::new(self.key.finish()),
            Arc::new(self.value.finish()),
            Arc::new(self.headers.finish()),
            Arc::new(self.producer_id.finish()),
            Arc::new(self.producer_epoch.finish()),
            Arc::new(self.sequence.finish()),
            Arc::new(self.batch_base_offset.finish()),
            Arc::new(self.batch_last_offset_delta.finish()),
            Arc::new(self.batch_partition_leader_epoch.finish()),
            Arc::new(self.batch_attributes.finish()),
            Arc::new(self.batch_base_timestamp.finish()),
            Arc::new(self.batch_max_timestamp.finish()),
        ];
        if let Some(builder) = &mut self.value_json {
            columns.push(Arc::new(builder.finish()));
        }
        self.payload_bytes = 0;
        Ok(RecordBatch::try_new(self.schema.clone(), columns)?)
    }
}

/// Fills one `value_json` row. Returns false when the value is not a JSON object (the row's
/// struct is then null and every field null).
fn project_json(
    projection: &JsonProjection,
    value: Option<&[u8]>,
    out: &mut StructBuilder,
) -> bool {
    let parsed = value.and_then(|v| {
        use serde::de::DeserializeSeed;
        let mut de = serde_json::Deserializer::from_slice(v);
        let fields = ProjectSeed(projection).deserialize(&mut de).ok()?;
        de.end().ok()?;
        Some(fields)
    });
    let is_object = parsed.is_some();
    let found = parsed.unwrap_or_default();
    for (i, (_, kind)) in projection.fields.iter().enumerate() {
        let v = found.get(&i);
        match kind {
            JsonKind::String => {
                let text = v.map(|v| match v {
                    serde_json::Value::String(s) => s.clone(),
                    other => other.to_string(),
                });
                out.field_builder::<StringBuilder>(i)
                    .expect("string field")
                    .append_option(text.filter(|_| !matches!(v, Some(serde_json::Value::Null))));
            }
            JsonKind::Json => {
                let text = v.filter(|v| !v.is_null()).map(|v| v.to_string());
                out.field_builder::<StringBuilder>(i)
                    .expect("json field")
                    .append_option(text);
            }
            JsonKind::Long => out
                .field_builder::<Int64Builder>(i)
                .expect("long field")
                .append_option(v.and_then(|v| v.as_i64())),
            JsonKind::Double => out
                .field_builder::<Float64Builder>(i)
                .expect("double field")
                .append_option(v.and_then(|v| v.as_f64())),
            JsonKind::Boolean => out
                .field_builder::<BooleanBuilder>(i)
                .expect("boolean field")
                .append_option(v.and_then(|v| v.as_bool())),
        }
    }
    out.append(is_object);
    // A null value (a tombstone) is not a bad record.
    is_object || value.is_none()
}

/// Deserializes a JSON object keeping only the projected fields (by index); other fields are
/// skipped without building values.
struct ProjectSeed<'a>(&'a JsonProjection);

impl<'de> serde::de::DeserializeSeed<'de> for ProjectSeed<'_> {
    type Value = HashMap<usize, serde_json::Value>;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> serde::de::Visitor<'de> for ProjectSeed<'_> {
    type Value = HashMap<usize, serde_json::Value>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut found = HashMap::new();
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            match self.0.index.get(key.as_ref()) {
                Some(&i) => {
                    let value: serde_json::Value = map.next_value()?;
                    found.insert(i, value);
                }
                None => {
                    map.next_value::<serde::de::IgnoredAny>()?;
                }
            }
        }
        Ok(found)
    }
}
