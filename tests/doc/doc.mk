# tests/doc/ - checks of the documentation against the code: every
# parameter in the code's tables is documented in zfarm.conf(5) and the
# reference names no parameter that does not exist.  Included after
# tests/local.mk, so ZF_PY_TESTS puts the test in TESTS and EXTRA_DIST.
ZF_PY_TESTS += tests/doc/test_params_doc.py
