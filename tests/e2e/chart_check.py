"""The browser check that reads the charts: what a clinician would see cut, stretched or mislabelled.

Why in the browser: only a real layout engine knows where Plotly put each piece of SVG text, how
wide the page is at 1366 px, and which axis range Plotly finally chose. Each rule below matches a
problem issue 20 found by eye (a cut SHAP label, a timeline from 1961 to 2031, a calibration axis
from -1 to 2, "recommended None"); ``chart_problems`` returns them as sentences so that one run
lists everything wrong on a page instead of stopping at the first.
"""

from __future__ import annotations

# Plotly keeps its final layout on the graph div (``_fullLayout``, ``_fullData``): the ranges read here are
# the ones drawn, autorange included. Text is compared with the box it must stay in: every SVG text with the
# chart's box; text drawn by a trace (bar labels, numbers at risk) with its subplot's plotting area, where
# Plotly clips it; the legend must not sit on the title.
_CHECK_JS = r"""
(opts) => {
  const problems = [];
  const DAY = 86400000;
  const inside = (r, b, tol) => r.left >= b.left - tol && r.right <= b.right + tol &&
                                r.top >= b.top - tol && r.bottom <= b.bottom + tol;
  const overlap = (a, b) => a.left < b.right && b.left < a.right && a.top < b.bottom && b.top < a.bottom;
  const charts = [...document.querySelectorAll('.js-plotly-plot')];
  charts.forEach((gd, index) => {
    const box = gd.getBoundingClientRect();
    if (box.width < 2 || box.height < 2) return;  // in a closed tab or expander
    const lay = gd._fullLayout;
    if (!lay) return;
    const title = (lay.title && lay.title.text) || `chart ${index + 1}`;
    const name = `"${title.replace(/<[^>]+>/g, ' ')}"`;
    for (const t of gd.querySelectorAll('svg text')) {
      const text = t.textContent.trim();
      if (!text) continue;
      const r = t.getBoundingClientRect();
      if (r.width === 0 && r.height === 0) continue;
      if (!inside(r, box, 1.5)) problems.push(`${name}: text "${text}" outside the chart`);
    }
    // trace text (bar labels, text-mode scatter): inside its subplot's plotting area, where Plotly clips it
    for (const sub of gd.querySelectorAll('.cartesianlayer > g.subplot')) {
      const cls = [...sub.classList].find(c => c !== 'subplot');
      const drag = gd.querySelector(`.draglayer g.${cls} rect.nsewdrag`);
      if (!drag) continue;
      const area = drag.getBoundingClientRect();
      for (const t of sub.querySelectorAll('g.overplot text, g.plot text')) {
        const text = t.textContent.trim();
        if (!text) continue;
        const r = t.getBoundingClientRect();
        if (r.width === 0 && r.height === 0) continue;
        if (!inside(r, area, 1.5)) problems.push(`${name}: label "${text}" cut at the plotting area`);
      }
    }
    const legend = gd.querySelector('g.legend');
    const gtitle = gd.querySelector('.g-gtitle text');
    if (legend && gtitle && gtitle.textContent.trim()) {
      if (overlap(legend.getBoundingClientRect(), gtitle.getBoundingClientRect()))
        problems.push(`${name}: the legend sits on the title`);
    }
    // axes: a date axis spans its data plus a margin; a probability axis stays in [0, 1]
    const data = gd._fullData || [];
    for (const key of Object.keys(lay).filter(k => /^[xy]axis\d*$/.test(k))) {
      const ax = lay[key];
      if (!ax || !ax.range || ax.visible === false) continue;
      const letter = key[0];
      const id = ax._id;
      // axes that share a range (make_subplots' shared axes "match" one another) share their data
      const group = ax.matches || id;
      const ids = Object.keys(lay).filter(k => k[0] === letter && /^[xy]axis\d*$/.test(k))
        .map(k => lay[k]).filter(o => o && ((o.matches || o._id) === group || o._id === group)).map(o => o._id);
      const on = data.filter(tr => tr.visible !== false && ids.includes(tr[letter + 'axis'] || letter));
      if (ax.type === 'date') {
        const values = on.flatMap(tr => [...(tr[letter] || [])]).map(v => new Date(v).getTime())
                         .filter(v => Number.isFinite(v));
        if (!values.length) continue;
        const lo = Math.min(...values), hi = Math.max(...values);
        const a = new Date(ax.range[0]).getTime(), b = new Date(ax.range[1]).getTime();
        const allowed = Math.max(0.25 * (hi - lo), opts.minDateSpanDays * DAY);
        if ((b - a) - (hi - lo) > allowed)
          problems.push(`${name}: date axis ${ax.range[0].slice(0, 10)} to ${String(ax.range[1]).slice(0, 10)}` +
                        ` for data from ${new Date(lo).toISOString().slice(0, 10)} to ${new Date(hi).toISOString().slice(0, 10)}`);
      }
      const titleText = ((ax.title && ax.title.text) || '').toLowerCase();
      const fmt = String(ax.tickformat || '');
      const probability = /%$/.test(fmt) ||
        (!titleText.includes('%') && /probability|proportion|confidence|accuracy|observed|predicted risk/.test(titleText));
      if (probability && ax.type !== 'category' && ax.type !== 'date') {
        const [a, b] = ax.range.map(Number);
        if (Math.min(a, b) < -0.05 || Math.max(a, b) > 1.05)
          problems.push(`${name}: probability axis ${titleText || key} runs ${a.toFixed(2)} to ${b.toFixed(2)}`);
      }
    }
  });
  // the page's words: no literal None / nan where a value is missing
  const words = document.querySelector('[data-testid="stMain"]') || document.body;
  const cells = [...document.querySelectorAll('[data-testid="stDataFrame"] [role="gridcell"]')].map(c => c.textContent);
  const texts = [words.innerText, cells.join(' | '), ...charts.map(gd => [...gd.querySelectorAll('svg text')].map(t => t.textContent).join(' '))];
  for (const m of texts.join('\n').matchAll(/.{0,40}\b(None|nan|NaN)\b.{0,40}/g))
    problems.push(`literal "${m[1]}" shown: "${m[0].trim()}"`);
  const overflow = document.documentElement.scrollWidth - window.innerWidth;
  if (overflow > 1) problems.push(`the page scrolls sideways by ${overflow} px`);
  return problems;
}
"""

# A date axis may run past its data by a quarter of the data's span, or by this many days when the data are
# short (a single reading still gets a readable year around it).
MIN_DATE_SPAN_DAYS = 400


def chart_problems(page) -> list[str]:
    """Every problem the check finds on what the page shows now (open tabs and expanders only)."""
    return list(page.evaluate(_CHECK_JS, {"minDateSpanDays": MIN_DATE_SPAN_DAYS}))


_EMPTY_PAGE = '<html><body style="margin:0"><div id="figure"></div></body></html>'
_DRAW_JS = """([figure, width]) => {
  const div = document.getElementById('figure');
  div.style.width = `${width}px`;
  const f = JSON.parse(figure);
  return Plotly.newPlot(div, f.data, f.layout, {responsive: false}).then(() => true);
}"""


def render_figure(page, fig, width: int) -> None:
    """Draw ``fig`` alone in ``page`` at ``width`` px (plotly.js from the installed plotly, no network),
    as Streamlit draws it: the container's width, the figure's own height.

    Why plotly.js is loaded once per page and each figure drawn into the same div: a whole HTML
    page per figure (``to_html``) made Chromium parse the 4.6 MB script again for every figure.
    """
    if not page.evaluate(
        "() => typeof Plotly !== 'undefined' && !!document.getElementById('figure')"
    ):
        page.set_content(_EMPTY_PAGE)
        page.add_script_tag(content=_plotly_js())
    page.evaluate(_DRAW_JS, [fig.to_json(), width])
    page.wait_for_selector(".js-plotly-plot .main-svg")
    page.wait_for_timeout(100)


def _plotly_js() -> str:
    # lazy: plotly's bundled script (megabytes), read only by the tests that draw figures alone
    from plotly.offline import get_plotlyjs

    return get_plotlyjs()
