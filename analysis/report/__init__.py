"""The report: stored verdicts over a period -> a report model -> one HTML page (terminal tables
are drawn by probe.cli.render, so that analysis does not depend on rich).

    model .... what a report holds (Report, PlatformReport, lanes and cells) and what it reads
    build .... build_report: the model from the store (timeline, events, current states, lanes)
    labels ... the labels both renderings use (networks, UTC times, the period, rates)
    page ..... render_html: one self-contained page (inline CSS and SVG, no script)
"""
