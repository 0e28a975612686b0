"""The package layout, which setup.cfg cannot say: the source directory `server/` is
the import package `wsfan`, and the pages (`static/`) and the default configuration
(`config/`) ship inside it as `wsfan/static` and `wsfan/defaults`. Everything else
(metadata, dependencies, tool settings) is in setup.cfg."""

from setuptools import find_packages, setup

DATA = {"wsfan.static": "static", "wsfan.defaults": "config"}

setup(
    package_dir={"wsfan": "server", **DATA},
    packages=["wsfan", *(f"wsfan.{name}" for name in find_packages("server")), *DATA],
    package_data={"wsfan.static": ["**/*"], "wsfan.defaults": ["*.toml"]},
    exclude_package_data={"wsfan.static": ["vendor/refresh.sh"]},
)
