"""Durable state in MongoDB. `store.mongo` is the only module that imports Motor."""

from .mongo import MongoStore

__all__ = ["MongoStore"]
