"""A simulator of the five vendors' HTTP APIs, as one ASGI app (see ``app.py``).

``DEMO_ENV`` holds the credentials the demo, the tests and the benchmarks give both the adapters and the
simulator; they are not secrets of any real account.
"""

from __future__ import annotations

DEMO_ENV: dict[str, str] = {
    "SMSD_INFOCLOUD__API_KEY": "demo-infocloud-api-key",
    "SMSD_INFOCLOUD__ACCESS_KEY": "demo-infocloud-access-key",
    "SMSD_XIAORUI__SECRET_ID": "AKIDdemoxiaorui",
    "SMSD_XIAORUI__SECRET_KEY": "demo-xiaorui-secret-key",
    "SMSD_XIAORUI__ACCOUNT": "demo-xiaorui",
    "SMSD_XIAORUI__PASSWORD": "demo-xiaorui-password",
    "SMSD_DEEPFINCH__SECRET_ID": "AKIDdemodeepfinch",
    "SMSD_DEEPFINCH__SECRET_KEY": "demo-deepfinch-secret-key",
    "SMSD_TENCENT__SDK_APP_ID": "1400000000",
    "SMSD_TENCENT__APP_KEY": "demo-tencent-app-key",
    "SMSD_TENCENT__SIGN": "腾讯云",
    "SMSD_IHUYI__ACCOUNT": "C00000001",
    "SMSD_IHUYI__API_KEY": "demo-ihuyi-api-key",
}
