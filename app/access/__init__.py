"""Entitlements, signed HLS streaming, playback progress and watch statistics."""
