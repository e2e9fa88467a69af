"""The broker's security settings for the stream worker: the coordinator's COORD_KAFKA_SECURITY
(librdkafka keys, as every other Kafka client of the project takes them) turned into faust's
`broker_credentials`, so a worker reaches the broker the service reaches.

    security_options(settings.kafka_security_config())  # the coordinator: refuse a bad one at start
    broker_credentials(security)                        # the worker: faust's credentials, or None

- `security.protocol` PLAINTEXT: no credentials; SSL: `SSLCredentials(context)`;
- SASL_PLAINTEXT or SASL_SSL with `sasl.mechanism` (or `sasl.mechanisms`) PLAIN, SCRAM-SHA-256 or
  SCRAM-SHA-512, `sasl.username`, `sasl.password`: `SASLCredentials(username, password,
  mechanism, ssl_context)`; with GSSAPI (`sasl.kerberos.service.name`): `GSSAPICredentials`;
- `ssl.ca.location`, `ssl.certificate.location`, `ssl.key.location`, `ssl.key.password`,
  `ssl.endpoint.identification.algorithm` (https, none): the `ssl.SSLContext` given (SSL, SASL_SSL).

Any other key or value is refused, naming it: a setting the worker would ignore would make it
connect otherwise than the service does. The standard library only (faust is imported by the
worker's call), so the coordinator can check a setting without faust installed.
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

SECURITY_ENV = "COORD_STREAM_KAFKA_SECURITY"  # the worker's environment: the settings as JSON
PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "GSSAPI")
SSL_KEYS = {
    "ssl.ca.location": "cafile",
    "ssl.certificate.location": "certfile",
    "ssl.key.location": "keyfile",
    "ssl.key.password": "key_password",
    "ssl.endpoint.identification.algorithm": "check_hostname",
}
SASL_KEYS = {
    "sasl.mechanism": "mechanism",
    "sasl.mechanisms": "mechanism",
    "sasl.username": "username",
    "sasl.password": "password",
    "sasl.kerberos.service.name": "kerberos_service_name",
}


def security_options(security: dict[str, str]) -> dict[str, Any]:
    """COORD_KAFKA_SECURITY's librdkafka keys as the worker's options (protocol, mechanism, the
    SASL and SSL fields); ValueError naming the key or value the worker cannot take."""
    options: dict[str, Any] = {"protocol": "PLAINTEXT"}
    for key, value in security.items():
        if key == "security.protocol":
            if value.upper() not in PROTOCOLS:
                raise ValueError(f"security.protocol {value!r} is not one of {', '.join(PROTOCOLS)}")
            options["protocol"] = value.upper()
        elif key in SASL_KEYS:
            options[SASL_KEYS[key]] = value
        elif key in SSL_KEYS:
            options[SSL_KEYS[key]] = value
        else:
            raise ValueError(
                f"{key!r} is not a setting the stream worker takes "
                f"(it takes security.protocol, {', '.join([*SASL_KEYS, *SSL_KEYS])})"
            )
    protocol = options["protocol"]
    if protocol.startswith("SASL"):
        mechanism = options.setdefault("mechanism", "PLAIN").upper()
        if mechanism not in MECHANISMS:
            raise ValueError(f"sasl.mechanism {mechanism!r} is not one of {', '.join(MECHANISMS)}")
        options["mechanism"] = mechanism
        if mechanism != "GSSAPI" and not (options.get("username") and options.get("password")):
            raise ValueError(f"sasl.mechanism {mechanism} needs sasl.username and sasl.password")
    elif any(SASL_KEYS[k] in options for k in SASL_KEYS):
        raise ValueError(f"sasl.* settings need security.protocol SASL_PLAINTEXT or SASL_SSL, not {protocol}")
    algorithm = options.get("check_hostname")
    if algorithm is not None and algorithm not in ("https", "none", ""):
        raise ValueError(f"ssl.endpoint.identification.algorithm {algorithm!r} is neither https nor none")
    if not protocol.endswith("SSL") and any(k in options for k in SSL_KEYS.values()):
        raise ValueError(f"ssl.* settings need security.protocol SSL or SASL_SSL, not {protocol}")
    for key, field in SSL_KEYS.items():
        path = options.get(field) if field in ("cafile", "certfile", "keyfile") else None
        if path is not None and not Path(path).is_file():
            raise ValueError(f"{key} {path!r} is not a file")
    return options


def ssl_context(options: dict[str, Any]) -> ssl.SSLContext:
    """The TLS context librdkafka's ssl.* settings describe (the system's CAs by default)."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=options.get("cafile"))
    if options.get("certfile"):
        context.load_cert_chain(options["certfile"], options.get("keyfile"), options.get("key_password"))
    if options.get("check_hostname") in ("none", ""):
        context.check_hostname = False
    return context


def broker_credentials(security: dict[str, str]) -> Any:
    """faust's `broker_credentials` for COORD_KAFKA_SECURITY's settings; None for PLAINTEXT."""
    options = security_options(security)
    protocol = options["protocol"]
    if protocol == "PLAINTEXT":
        return None
    import faust

    context = ssl_context(options) if protocol.endswith("SSL") else None
    if protocol == "SSL":
        return faust.SSLCredentials(context)
    if options["mechanism"] == "GSSAPI":
        return faust.GSSAPICredentials(
            kerberos_service_name=options.get("kerberos_service_name", "kafka"), ssl_context=context
        )
    return faust.SASLCredentials(
        username=options["username"],
        password=options["password"],
        mechanism=options["mechanism"],
        ssl_context=context,
    )
