# Sourced by the interop scripts: a virtualenv with the official Huawei Cloud
# Python SDK (huaweicloudsdksms from PyPI) and cryptography (Ed25519), in
# target/; sets SDK_PYTHON.
SDK_VERSION=${SDK_VERSION:-3.1.219}
venv="$root/target/interop-venv"
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c "import huaweicloudsdksms, cryptography" 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "huaweicloudsdksms==$SDK_VERSION" cryptography
fi
SDK_PYTHON="$venv/bin/python"
