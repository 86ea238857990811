"""Object storage behind one protocol; the backend is chosen by ``STORAGE_BACKEND``."""

from __future__ import annotations

from flask import Flask, current_app

from app.storage.base import ObjectInfo, Storage, StorageError, UploadTarget

__all__ = ["ObjectInfo", "Storage", "StorageError", "UploadTarget", "get_storage", "init_app"]


def init_app(app: Flask) -> None:
    if app.config["STORAGE_BACKEND"] == "s3":
        from app.storage.s3 import S3Storage  # boto3 is only imported when used

        app.extensions["storage"] = S3Storage.from_config(app.config)
    else:
        from app.storage.local import LocalStorage

        app.extensions["storage"] = LocalStorage.from_config(app.config)


def get_storage() -> Storage:
    storage: Storage = current_app.extensions["storage"]
    return storage
