"""Files: telemetry tables in bounded chunks, files as Source and Sink, topology files."""
