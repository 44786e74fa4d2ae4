// Interactive 3-D structure of the candidate page (3Dmol.js, vendored under /static/vendor).
// Reads /candidates/<key>/structure: lattice rows a, b, c and Cartesian sites in Å.
(function () {
  "use strict";
  const el = document.getElementById("viewer");
  if (!el) return;
  window.gmtViewer = { ready: false, atoms: 0, error: null };

  function fail(message) {
    window.gmtViewer.error = message;
    el.classList.add("failed");
    el.textContent = "structure viewer: " + message;
  }

  function cellEdges(L) {
    const corner = (i, j, k) => [0, 1, 2].map((c) => i * L[0][c] + j * L[1][c] + k * L[2][c]);
    const edges = [];
    for (let i = 0; i <= 1; i++)
      for (let j = 0; j <= 1; j++)
        for (let k = 0; k <= 1; k++) {
          if (!i) edges.push([corner(i, j, k), corner(1, j, k)]);
          if (!j) edges.push([corner(i, j, k), corner(i, 1, k)]);
          if (!k) edges.push([corner(i, j, k), corner(i, j, 1)]);
        }
    return edges;
  }

  fetch(el.dataset.url, { headers: { Accept: "application/json" } })
    .then((r) => {
      if (!r.ok) throw new Error("HTTP " + r.status);
      return r.json();
    })
    .then((body) => {
      const s = body.data[0];
      if (typeof $3Dmol === "undefined") throw new Error("3Dmol.js did not load");
      const viewer = $3Dmol.createViewer(el, { backgroundColor: "white", antialias: false });
      if (!viewer) throw new Error("WebGL is not available in this browser");
      const xyz = [String(s.sites.length), s.formula];
      for (const site of s.sites) xyz.push(site.species + " " + site.xyz.join(" "));
      const model = viewer.addModel(xyz.join("\n"), "xyz");
      viewer.setStyle({}, { sphere: { scale: 0.32 }, stick: { radius: 0.1 } });
      for (const [a, b] of cellEdges(s.lattice)) {
        viewer.addCylinder({
          start: { x: a[0], y: a[1], z: a[2] },
          end: { x: b[0], y: b[1], z: b[2] },
          radius: 0.03,
          color: "#555555",
          fromCap: 1,
          toCap: 1,
        });
      }
      viewer.zoomTo();
      viewer.zoom(0.85);
      viewer.rotate(-20, "x");
      viewer.rotate(25, "y");
      viewer.render();
      window.gmtViewer = {
        ready: true,
        atoms: model.selectedAtoms({}).length,
        sites: s.sites.length,
        error: null,
      };
      el.dataset.ready = "true";
    })
    .catch((e) => fail(e.message || String(e)));
})();
