// index.html: filters by verdict and area, expand/collapse, and a self-test run when the
// address ends in #selftest (the browser test of the report reads its result from the page).
(function () {
  "use strict";
  var errors = [];
  window.addEventListener("error", function (e) { errors.push(String(e.message || e)); });
  document.addEventListener("securitypolicyviolation", function (e) {
    errors.push("blocked by the page's policy: " + e.blockedURI);
  });

  function all(selector) { return Array.prototype.slice.call(document.querySelectorAll(selector)); }
  var buttons = all("button[data-filter-verdict]");
  var area = document.getElementById("area-filter");
  var shown = document.getElementById("shown");

  function apply() {
    var on = {};
    buttons.forEach(function (b) { on[b.dataset.filterVerdict] = b.getAttribute("aria-pressed") === "true"; });
    var wanted = area ? area.value : "";
    var scenarios = all("details.scenario");
    var visible = 0;
    scenarios.forEach(function (d) {
      var show = on[d.dataset.verdict] && (!wanted || d.dataset.area === wanted);
      d.hidden = !show;
      if (show) { visible += 1; }
    });
    all(".scenario.not-run").forEach(function (d) { d.hidden = !!wanted && d.dataset.area !== wanted; });
    all("#coverage tbody tr").forEach(function (tr) { tr.hidden = !!wanted && tr.dataset.area !== wanted; });
    if (shown) { shown.textContent = visible + " of " + scenarios.length + " scenarios shown"; }
    return visible;
  }

  buttons.forEach(function (b) {
    b.addEventListener("click", function () {
      b.setAttribute("aria-pressed", b.getAttribute("aria-pressed") === "true" ? "false" : "true");
      apply();
    });
  });
  if (area) { area.addEventListener("change", apply); }
  function setOpen(open) { all("details.scenario").forEach(function (d) { if (!d.hidden) { d.open = open; } }); }
  var expand = document.getElementById("expand-all");
  var collapse = document.getElementById("collapse-all");
  if (expand) { expand.addEventListener("click", function () { setOpen(true); }); }
  if (collapse) { collapse.addEventListener("click", function () { setOpen(false); }); }
  // A link to a scenario opens it.
  function openTarget() {
    var id = decodeURIComponent(location.hash.slice(1));
    var target = id && document.getElementById(id);
    if (target && target.tagName === "DETAILS") { target.hidden = false; target.open = true; }
  }
  window.addEventListener("hashchange", openTarget);
  apply();
  openTarget();

  if (location.hash !== "#selftest") { return; }
  // The self-test: what a person would do, checked, and written into the page.
  var checks = [];
  function check(name, ok, detail) { checks.push({ name: name, ok: !!ok, detail: String(detail) }); }
  var total = all("details.scenario").length;
  var before = apply();
  check("scenarios listed", total > 0 && before === total, before + " of " + total + " shown");
  var first = buttons.filter(function (b) { return all('details.scenario[data-verdict="' + b.dataset.filterVerdict + '"]').length > 0; })[0];
  if (first) {
    first.click();
    var after = all("details.scenario").filter(function (d) { return !d.hidden; }).length;
    check("a verdict filter click hides its scenarios", after < before, first.dataset.filterVerdict + ": " + before + " -> " + after);
    first.click();
    var again = all("details.scenario").filter(function (d) { return !d.hidden; }).length;
    check("a second click shows them again", again === before, again + " shown");
  } else {
    check("a verdict filter to click", false, "no filter button with scenarios");
  }
  if (area && area.options.length > 1) {
    area.value = area.options[1].value;
    area.dispatchEvent(new Event("change"));
    var inArea = all("details.scenario").filter(function (d) { return !d.hidden; }).length;
    check("the area filter narrows the list", inArea > 0 && inArea <= total, area.value + ": " + inArea + " shown");
    area.value = "";
    area.dispatchEvent(new Event("change"));
  }
  var withTranscript = all("details.scenario").filter(function (d) { return d.querySelector("table.transcript"); })[0];
  if (withTranscript) {
    var table = withTranscript.querySelector("table.transcript");
    // A closed <details> may still lay its content out (content-visibility: hidden), so
    // visibility is asked of the browser rather than read from the height.
    var seen = function () {
      var rendered = table.checkVisibility ? table.checkVisibility() : true;
      return rendered && table.getBoundingClientRect().height > 0;
    };
    var closedSeen = seen();
    withTranscript.querySelector("summary").click();
    var openSeen = seen();
    check("a transcript expands", withTranscript.open && !closedSeen && openSeen,
      withTranscript.id + ": visible " + closedSeen + " -> " + openSeen);
    var rows = table.querySelectorAll("tr.to, tr.from").length;
    check("the transcript shows both directions", table.querySelector("tr.to") && table.querySelector("tr.from"), rows + " rows");
  } else {
    check("a scenario with a transcript", false, "none found");
  }
  check("the coverage matrix lists requirements", all("#coverage tbody tr").length > 0, all("#coverage tbody tr").length + " rows");
  var resources = (performance.getEntriesByType ? performance.getEntriesByType("resource") : []).length;
  check("no request left the page", resources === 0, resources + " resource(s) fetched");
  check("no script error", errors.length === 0, errors.join("; "));
  var ok = checks.every(function (c) { return c.ok; });
  var out = document.createElement("pre");
  out.id = "selftest-result";
  out.dataset.ok = ok ? "true" : "false";
  out.textContent = JSON.stringify({ ok: ok, checks: checks }, null, 1);
  document.body.insertBefore(out, document.body.firstChild);
})();
