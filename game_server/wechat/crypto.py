"""What the session_key proves: the rawData signature and the encryptedData decryption.

Only WeChat and this server know the session_key, so a valid signature proves WeChat
produced rawData for this user, and encryptedData that decrypts with it (and carries this
app's watermark) was made by WeChat for this app.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from typing import Any

import orjson
from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from game_server.wechat.errors import LoginError

AES_BLOCK_BITS = 128
AES_KEY_BYTES = 16


def verify_signature(raw_data: str, session_key: str, signature: str) -> None:
    """Raise ``LoginError`` (bad_signature) unless ``signature == sha1(rawData + session_key)``.

    Only WeChat and this server know the session_key, so a match proves WeChat produced
    rawData for this user. Compared in constant time.
    """
    expected = hashlib.sha1((raw_data + session_key).encode()).hexdigest()
    # Bytes, not str: compare_digest refuses non-ASCII str, and signature comes from a client.
    if not hmac.compare_digest(expected.encode(), signature.encode()):
        raise LoginError(401, "bad_signature", "signature does not match rawData")


def _b64decode(text: str, what: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise _bad_encrypted(f"{what} is not valid base64") from None


def _bad_encrypted(message: str) -> LoginError:
    return LoginError(400, "bad_encrypted_data", message)


def decrypt_user_info(encrypted_data: str, iv: str, session_key: str, appid: str) -> dict[str, Any]:
    """Decrypt ``encryptedData`` (AES-128-CBC, PKCS#7) and check it was made for ``appid``.

    The watermark check stops data encrypted for another mini-program (a replay from a
    different app sharing a user) from being accepted here.
    """
    key = _b64decode(session_key, "session_key")
    if len(key) != AES_KEY_BYTES:
        raise _bad_encrypted(f"session_key must be {AES_KEY_BYTES} bytes")
    iv_bytes = _b64decode(iv, "iv")
    if len(iv_bytes) != AES_BLOCK_BITS // 8:
        raise _bad_encrypted(f"iv must be {AES_BLOCK_BITS // 8} bytes")
    ciphertext = _b64decode(encrypted_data, "encryptedData")
    if not ciphertext or len(ciphertext) % (AES_BLOCK_BITS // 8):
        raise _bad_encrypted("encryptedData is not whole AES blocks")
    try:
        decryptor = Cipher(algorithms.AES(key), modes.CBC(iv_bytes)).decryptor()
        padded = decryptor.update(ciphertext) + decryptor.finalize()
        unpadder = padding.PKCS7(AES_BLOCK_BITS).unpadder()
        plaintext = unpadder.update(padded) + unpadder.finalize()
        info = orjson.loads(plaintext)
    except ValueError:  # bad padding (a wrong key, mostly) or not JSON (JSONDecodeError)
        raise _bad_encrypted("encryptedData does not decrypt with this session") from None
    if not isinstance(info, dict):
        raise _bad_encrypted("encryptedData does not hold a JSON object")
    watermark = info.get("watermark")
    if not isinstance(watermark, dict) or watermark.get("appid") != appid:
        raise LoginError(401, "watermark_mismatch", "encryptedData was made for another app")
    return info
