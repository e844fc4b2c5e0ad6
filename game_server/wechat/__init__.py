"""WeChat mini-program login: code2session, the signature over rawData, the encryptedData.

May import the core and aiohttp's client, never the network shell or storage: the login
route (``net/http_api.py``) calls ``parse_login_body`` and ``login`` and turns a
``LoginError`` into its HTTP answer.
"""
