// Draws each plot of a console page with Plotly.js (served by the API): the figure is
// JSON in a <script type="application/json"> element next to its <div class="plot">.
"use strict";

function drawPlots() {
  for (const element of document.querySelectorAll("div.plot[data-figure]")) {
    const source = document.getElementById(element.dataset.figure);
    if (!source) {
      continue;
    }
    if (typeof Plotly === "undefined") {
      element.textContent = "Plotly.js did not load: the plot cannot be drawn.";
      continue;
    }
    const figure = JSON.parse(source.textContent);
    Plotly.newPlot(element, figure.data, figure.layout, {
      displaylogo: false,
      responsive: true,
    }).then(() => {
      element.dataset.rendered = "true";
    });
  }
}

document.addEventListener("DOMContentLoaded", drawPlots);
