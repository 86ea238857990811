"""Media library: uploads and the ffmpeg ingest pipeline to HLS."""
