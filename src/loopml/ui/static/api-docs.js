// Starts Swagger UI on /api/v1/docs. A file, not an inline script: the CSP allows same-origin
// scripts only. The spec's URL comes from the page, nothing is fetched from elsewhere.
"use strict";
(function () {
  var root = document.getElementById("swagger-ui");
  window.ui = window.SwaggerUIBundle({
    url: root.getAttribute("data-openapi-url"),
    dom_id: "#swagger-ui",
    deepLinking: true,
    validatorUrl: null, // the default badge would ask validator.swagger.io about our spec
    presets: [window.SwaggerUIBundle.presets.apis],
    layout: "BaseLayout",
  });
})();
