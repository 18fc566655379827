"""Prints a well-formed keygate token (valid checksum) with a random secret:
forge.py PREFIX ID. Used by the bench to send wrong secrets and unknown ids."""
import secrets
import string
import sys
import zlib

ALPHABET = string.digits + string.ascii_uppercase + string.ascii_lowercase
body = sys.argv[1] + sys.argv[2] + "_" + "".join(secrets.choice(ALPHABET) for _ in range(32))
n = zlib.crc32(body.encode())
checksum = ""
for _ in range(6):
    checksum = ALPHABET[n % 62] + checksum
    n //= 62
print(body + checksum)
