"""`gatewayd report`: who used what over a period, read from Prometheus, as HTML or text.

Layer: at the metrics floor. It reads a Prometheus server's HTTP API (what the
metrics layer exported, stored by Prometheus), never the kernel or the daemon,
and imports nothing of gatewayd's but itself. Modules, lowest first:

    prometheus_api.py   the HTTP API client (urllib, no dependency)
    periods.py          --since yesterday / --week / --month and the period before
    usage.py            counter increases over a period, gathered into ReportData
    text.py, html.py    the two renderings of one ReportData (html: inline SVG charts)
"""
