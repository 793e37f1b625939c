"""Settings: the one table (:mod:`.fields`), the checked :class:`Config`
(:mod:`.model`), loading from files, ``TRICORN_*`` and the CLI (:mod:`.load`),
bind parsing (:mod:`.binds`) and TLS contexts (:mod:`.tls`).

Imports only the standard library and :mod:`tricorn.errors`.
"""

from __future__ import annotations

from .binds import BindAddress as BindAddress
from .binds import parse_bind as parse_bind
from .fields import FIELDS as FIELDS
from .fields import FIELDS_BY_KEY as FIELDS_BY_KEY
from .fields import Field as Field
from .load import load_config as load_config
from .model import Config as Config

__all__ = ["FIELDS", "FIELDS_BY_KEY", "BindAddress", "Config", "Field", "load_config", "parse_bind"]
