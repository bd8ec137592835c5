"""Recordings on disk: the capture format, EDF+/BDF+/CSV readers and writers."""
