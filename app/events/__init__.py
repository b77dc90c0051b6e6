"""Live progress of uploads, jobs and batches as Server-Sent Events."""
