# tests/e2e/ - end-to-end tests of the whole MTA with etc/zfarm.conf
# (issue 8); included after tests/local.mk, so ZF_PY_TESTS puts them in
# TESTS and EXTRA_DIST.
ZF_PY_TESTS += tests/e2e/test_e2e.py
