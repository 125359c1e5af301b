/*
 * Draws the portal's charts with Chart.js (load chart.umd.min.js before this file).
 *
 *   <canvas data-chart="KIND" data-chart-data="ID"></canvas>
 *   {{ value|json_script:"ID" }}
 *
 * KIND picks one of the chart kinds below; ID names the json_script element with
 * its data. Charts are drawn when the page is ready and again after every htmx
 * swap: a chart whose data element was replaced is updated in place, a canvas that
 * was swapped in gets a new chart, and charts whose canvas left the page are freed.
 */
(function () {
  "use strict";

  var BLUE = "#3b6fb6", LIGHT_BLUE = "#7fa7d9", ORANGE = "#d98b3b", GREEN = "#2e8b57", PURPLE = "#8e44ad";

  var kinds = {
    // Examples per label of a dataset version: {labels: [...], counts: [...]}.
    "label-counts": function (data) {
      return {
        type: "bar",
        data: {labels: data.labels, datasets: [{label: "examples", data: data.counts, backgroundColor: BLUE}]},
        options: {
          maintainAspectRatio: false,
          plugins: {legend: {display: false}},
          scales: {y: {beginAtZero: true, ticks: {precision: 0}}}
        }
      };
    },

    // Accuracies per probe candidate, on one 0–1 scale: {labels, linear, knn}.
    "probe-accuracy": function (data) {
      return {
        type: "bar",
        data: {
          labels: data.labels,
          datasets: [
            {label: "linear probe accuracy", data: data.linear, backgroundColor: BLUE},
            {label: "kNN accuracy", data: data.knn, backgroundColor: LIGHT_BLUE}
          ]
        },
        options: {
          maintainAspectRatio: false,
          scales: {y: {min: 0, max: 1, title: {display: true, text: "accuracy"}}}
        }
      };
    },

    // LogME per probe candidate, on its own scale (it is not bounded like accuracy).
    "probe-logme": function (data) {
      return {
        type: "bar",
        data: {labels: data.labels, datasets: [{label: "LogME", data: data.logme, backgroundColor: ORANGE}]},
        options: {
          maintainAspectRatio: false,
          plugins: {legend: {display: false}},
          scales: {y: {title: {display: true, text: "LogME (higher is better)"}}}
        }
      };
    },

    // Fine-tune curves: {steps: [[step, loss], ...], epochs: [{step, val_loss, val_accuracy, val_macro_f1}, ...]}.
    "training-curves": function (data) {
      var epochs = data.epochs || [];
      function pick(key) { return epochs.map(function (e) { return {x: e.step, y: e[key]}; }); }
      var steps = (data.steps || []).map(function (p) { return {x: p[0], y: p[1]}; });
      return {
        type: "line",
        data: {datasets: [
          {label: "training loss", data: steps, borderColor: BLUE, pointRadius: 0, borderWidth: 1.5, yAxisID: "loss"},
          {label: "validation loss", data: pick("val_loss"), borderColor: ORANGE, backgroundColor: ORANGE, yAxisID: "loss"},
          {label: "validation accuracy", data: pick("val_accuracy"), borderColor: GREEN, backgroundColor: GREEN, yAxisID: "score"},
          {label: "validation macro-F1", data: pick("val_macro_f1"), borderColor: PURPLE, backgroundColor: PURPLE, yAxisID: "score"}
        ]},
        options: {
          maintainAspectRatio: false,
          animation: false,
          parsing: false,
          scales: {
            x: {type: "linear", title: {display: true, text: "step"}},
            loss: {position: "left", beginAtZero: true, title: {display: true, text: "loss"}},
            score: {position: "right", min: 0, max: 1, grid: {drawOnChartArea: false}, title: {display: true, text: "accuracy / macro-F1"}}
          }
        }
      };
    }
  };

  // The data each canvas was last drawn from, to skip redraws that change nothing.
  var drawnFrom = new WeakMap();

  function draw(canvas) {
    var build = kinds[canvas.dataset.chart];
    var source = document.getElementById(canvas.dataset.chartData);
    if (!build || !source) { return; }
    var text = source.textContent;
    var chart = window.Chart.getChart(canvas);
    if (chart && drawnFrom.get(canvas) === text) { return; }
    var config = build(JSON.parse(text));
    drawnFrom.set(canvas, text);
    if (!chart) {
      new window.Chart(canvas, config);
      return;
    }
    if (config.data.labels) { chart.data.labels = config.data.labels; }
    config.data.datasets.forEach(function (set, i) {
      if (chart.data.datasets[i]) { chart.data.datasets[i].data = set.data; }
    });
    chart.update("none");
  }

  function drawAll() {
    if (!window.Chart) { return; }
    Object.keys(window.Chart.instances).forEach(function (id) {
      var chart = window.Chart.instances[id];
      if (chart && !(chart.canvas && chart.canvas.isConnected)) { chart.destroy(); }
    });
    document.querySelectorAll("canvas[data-chart]").forEach(draw);
  }

  if (document.readyState === "loading") { document.addEventListener("DOMContentLoaded", drawAll); }
  else { drawAll(); }
  document.addEventListener("htmx:afterSwap", drawAll);
  document.addEventListener("htmx:load", drawAll);
})();
