// The dashboard's only script: copy buttons, the custom-range toggle and the clicks chart
// (uPlot). Pages work without it; it reads its data from data- attributes (no inline
// script under the Content-Security-Policy).
(function () {
  "use strict";

  function announce(text) {
    var status = document.getElementById("copy-status");
    if (status) status.textContent = text;
  }

  function copy(button) {
    var text = button.getAttribute("data-copy");
    var done = function () {
      var label = button.textContent;
      button.textContent = "Copied";
      announce("Copied " + text);
      setTimeout(function () { button.textContent = label; }, 1500);
    };
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(done, function () { fallback(text); done(); });
    } else {
      fallback(text);
      done();
    }
  }

  function fallback(text) {
    var area = document.createElement("textarea");
    area.value = text;
    area.setAttribute("readonly", "");
    area.className = "offscreen";
    document.body.appendChild(area);
    area.select();
    try { document.execCommand("copy"); } catch (e) { /* nothing more to try */ }
    document.body.removeChild(area);
  }

  function customToggle() {
    var range = document.getElementById("range");
    if (!range) return;
    var sync = function () {
      var custom = range.value === "custom";
      // Hidden and disabled: the dates are not sent for the preset ranges.
      document.querySelectorAll(".range .custom").forEach(function (el) {
        el.hidden = !custom;
        el.querySelectorAll("input").forEach(function (input) { input.disabled = !custom; });
      });
    };
    range.addEventListener("change", sync);
    sync();
  }

  function numbers(el, name) {
    var text = el.getAttribute(name) || "";
    return text === "" ? [] : text.split(",").map(Number);
  }

  function chart() {
    var el = document.getElementById("chart");
    if (!el || typeof uPlot === "undefined") return;
    var times = numbers(el, "data-times");
    var clicks = numbers(el, "data-clicks");
    var humans = numbers(el, "data-humans");
    var daily = el.getAttribute("data-unit") === "day";
    var accent = getComputedStyle(document.documentElement).getPropertyValue("--accent").trim() || "#1d4ed8";
    var size = function () {
      return { width: Math.max(el.clientWidth, 280), height: el.clientWidth < 500 ? 200 : 260 };
    };
    var opts = {
      width: size().width,
      height: size().height,
      legend: { show: true, live: false },
      // Buckets are UTC days and hours, as the rest of the page says.
      tzDate: function (ts) { return uPlot.tzDate(new Date(ts * 1e3), "Etc/UTC"); },
      cursor: { drag: { x: false, y: false } },
      scales: { x: { time: true }, y: { range: function (u, min, max) { return [0, Math.max(max, 1)]; } } },
      axes: [
        { values: daily ? "{MMM} {D}" : undefined },
        { label: "Clicks", values: function (u, splits) { return splits.map(function (v) { return v % 1 === 0 ? v : ""; }); } }
      ],
      series: [
        {},
        { label: "Clicks", stroke: accent, width: 2, fill: accent + "22", points: { show: times.length <= 60 } },
        { label: "People", stroke: "#047857", width: 2, dash: [6, 4], points: { show: false } }
      ]
    };
    var plot = new uPlot(opts, [times, clicks, humans], el);
    el.classList.add("drawn");
    window.addEventListener("resize", function () { plot.setSize(size()); });
  }

  // ISO country codes as names in the reader's language ("DE" -> "Germany (DE)").
  function countryNames() {
    if (typeof Intl === "undefined" || !Intl.DisplayNames) return;
    var names = new Intl.DisplayNames([navigator.language || "en"], { type: "region" });
    document.querySelectorAll("[data-kind=country]").forEach(function (el) {
      var code = el.textContent.trim();
      if (!/^[A-Z]{2}$/.test(code)) return;
      try {
        var name = names.of(code);
        if (name && name !== code) el.textContent = name + " (" + code + ")";
      } catch (e) { /* an unknown code stays as it is */ }
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    countryNames();
    document.querySelectorAll("button[data-copy]").forEach(function (b) {
      b.addEventListener("click", function () { copy(b); });
    });
    customToggle();
    chart();
  });
})();
