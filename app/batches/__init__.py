"""Batches: the jobs created together (one POST /api/v1/jobs, one multi-file upload), read and cancelled as one."""
