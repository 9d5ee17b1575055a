// loopml web UI: local times, metric charts (Plotly, served locally) and the compare picker.
// No inline scripts: pages hand data over as JSON in <script type="application/json">.
(function () {
  "use strict";

  // Plotly reads a little HTML in titles and legends; show user strings as plain text.
  function plain(text) {
    return String(text).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
  }

  function localiseTimes() {
    document.querySelectorAll("time[datetime]").forEach(function (node) {
      var when = new Date(node.getAttribute("datetime"));
      if (!isNaN(when.getTime())) {
        node.title = node.textContent + " UTC";
        node.textContent = when.toLocaleString(undefined, {
          year: "numeric", month: "short", day: "numeric",
          hour: "2-digit", minute: "2-digit", second: "2-digit" });
      }
    });
  }

  function drawCharts() {
    var holder = document.getElementById("chart-data");
    if (!holder || !window.Plotly) { return; }
    var data = JSON.parse(holder.textContent);
    var picker = document.getElementById("chart-x");
    var config = { displaylogo: false, responsive: true,
                   modeBarButtonsToRemove: ["sendDataToCloud", "lasso2d", "select2d"] };

    function render() {
      var mode = picker ? picker.value : "step";
      data.charts.forEach(function (chart) {
        var node = document.getElementById("chart-" + chart.id);
        if (!node) { return; }
        var traces = chart.traces.map(function (t) {
          return {
            type: "scatter", mode: t.value.length > 1 ? "lines" : "markers", name: plain(t.name),
            x: mode === "time" ? t.time.map(function (ms) { return new Date(ms); }) : t.step,
            y: t.value, connectgaps: false, hovertemplate: "%{y}<extra>" + plain(t.name) + "</extra>"
          };
        });
        var layout = {
          title: { text: plain(chart.title), font: { size: 14 }, x: 0.02 },
          margin: { l: 55, r: 15, t: 40, b: data.legend || traces.length > 1 ? 80 : 40 }, autosize: true, hovermode: "closest",
          xaxis: { title: { text: mode }, type: mode === "time" ? "date" : "linear", zeroline: false },
          yaxis: { zeroline: false, automargin: true },
          showlegend: Boolean(data.legend) || traces.length > 1,
          legend: { orientation: "h", x: 0, y: -0.25, yanchor: "top" },
          paper_bgcolor: "#fff", plot_bgcolor: "#fff"
        };
        window.Plotly.react(node, traces, layout, config);
      });
    }
    render();
    if (picker) { picker.addEventListener("change", render); }
  }

  // Compare: the button works with 2 to 10 ticked runs.
  function comparePicker() {
    var button = document.querySelector("button.compare-button");
    if (!button) { return; }
    var boxes = Array.prototype.slice.call(document.querySelectorAll('input[form="compare-form"]'));
    function update() {
      var ticked = boxes.filter(function (b) { return b.checked; }).length;
      button.disabled = ticked < 2 || ticked > 10;
      button.textContent = ticked ? "Compare " + ticked + " runs" : "Compare selected";
    }
    boxes.forEach(function (b) { b.addEventListener("change", update); });
    update();
  }

  function start() {
    localiseTimes();
    drawCharts();
    comparePicker();
  }
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
