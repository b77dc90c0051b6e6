/** API shapes as the Sluice API answers them (the schemas in app/, and the agreed contracts). */

export interface Quota {
  limit: number | null;
  used: number;
}

export interface Me {
  key_id: string;
  name: string;
  prefix: string;
  owner_id: string;
  admin: boolean;
  expires_at: string | null;
  quotas?: Record<string, Quota>;
}

export interface WebConfig {
  max_upload_bytes: number;
  accepted_types: string[];
  part_size: number;
  tus_endpoint: string;
}

export interface FileRecord {
  id: string;
  filename: string;
  original_filename: string;
  size: number;
  sha256: string | null;
  kind: string;
  content_type: string | null;
  status: string;
  error: string | null;
  process: boolean;
  bucket: string;
  storage_key: string;
  created_at: string;
  stored_at: string | null;
  duration_ms: number | null;
  job_id: string | null;
  job_state: string | null;
  rows_ok: number | null;
  rows_rejected: number | null;
  dataset_table: string | null;
  estimated_processing_s: number | null;
  encoding?: string | null;
  delimiter?: string | null;
}

export interface Page<T> {
  items: T[];
  total: number;
  offset: number;
  limit: number;
}

export interface JobRecord {
  id: string;
  batch_id: string;
  file_id: string;
  state: string;
  options: Record<string, unknown>;
  dataset_table: string | null;
  rows_ok: number;
  rows_rejected: number;
  bytes_read: number;
  bytes_total: number;
  progress: number;
  rate: number;
  eta_s: number | null;
  error: string | null;
  attempts: number;
  created_at: string;
  started_at: string | null;
  finished_at: string | null;
  cancel_requested: boolean;
  widenings: { column: string; from_type: string; to_type: string; row_number?: number }[];
  estimated_processing_s: number | null;
  /** What the worker found when the job did not say (null or absent on jobs from before the field). */
  detected?: DetectedReading | null;
}

export interface DetectedReading {
  encoding: string | null;
  delimiter: string | null;
  header: boolean | null;
  sheet: string | null;
}

export interface RowsPage {
  file_id: string;
  job_id: string | null;
  table: string;
  columns: { name: string; type: string }[];
  rows: unknown[][];
  row_numbers: number[];
  total: number;
  offset: number;
  limit: number;
}

export interface RejectPage {
  job_id: string;
  items: { row_number: number; reason: string; raw: string }[];
  total: number;
  offset: number;
  limit: number;
}

export interface UploadSession {
  id: string;
  filename: string;
  size: number;
  state: string;
  bytes_received: number;
  file_id: string | null;
  error: string | null;
}

export interface ActiveUpload {
  id: string;
  owner_id: string;
  filename: string;
  size: number;
  total_chunks: number;
  received_chunks: number;
  bytes_received: number;
  created_at: string;
  expires_at: string;
}

export interface MetricsPoint {
  hour: string;
  uploads: number;
  bytes: number;
  rows: number;
  upload_failures: number;
  job_failures: number;
}

export interface Metrics {
  range: string;
  bucket_seconds: number;
  cards: {
    files_today: number;
    bytes_today: number;
    upload_success_rate: number | null;
    median_upload_mib_s: number | null;
    rows_ingested: number;
    jobs_by_state: Record<string, number>;
    queue_depth: number;
    live_sessions: number;
    incomplete_multipart_uploads: number;
  };
  series: MetricsPoint[];
  health: Record<string, string>;
}

export interface StreamLink {
  url: string;
  expires_at: string;
}
