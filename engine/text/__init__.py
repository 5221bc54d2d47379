"""Text encoding for SMS: GSM 7 bit and UCS-2 codecs, segmentation, and decoding inbound parts.

Why a package of its own: this is a leaf. It knows the character tables of
3GPP TS 23.038, the User Data Header of TS 23.040 and SMPP's data_coding, and
nothing else: it imports nothing of ``engine`` outside ``engine.text`` and no
I/O library (asyncio, redis, aiohttp), so lower layers (the inbound path in
``dlr``) may import it later. ``tests/text/test_leaf.py`` checks that in a
fresh interpreter. This ``__init__`` stays empty so importing one module does
not build every table.

Modules: ``gsm7_tables`` / ``shift_tables`` (the character tables), ``gsm7``
(encode, decode, pack, unpack septets), ``segmenter`` (text → submit_sm
parts), ``udh`` (parse a User Data Header), ``decoder`` (short_message →
text per data_coding), ``cli`` (``sendgate segments``).
"""
