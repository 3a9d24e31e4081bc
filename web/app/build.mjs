// Writes dist/: the app's own sources as they are, and the map library copied from the
// package the lockfile pins (never by hand). The output is committed and embedded in both
// binaries, so `cargo build` needs no Node.js; CI rebuilds it and checks nothing changed.
//
// `node build.mjs [DIR]` writes to DIR instead, to compare with the committed dist/.
import { cpSync, mkdirSync, rmSync } from "node:fs";
import { pathToFileURL } from "node:url";

const dist = process.argv[2]
  ? pathToFileURL(`${process.argv[2].replace(/\/$/, "")}/`)
  : new URL("./dist/", import.meta.url);
rmSync(dist, { recursive: true, force: true });
mkdirSync(new URL("vendor/leaflet/", dist), { recursive: true });
cpSync(new URL("./src/", import.meta.url), dist, { recursive: true });
for (const file of ["leaflet.js", "leaflet.css"]) {
  cpSync(
    new URL(`./node_modules/leaflet/dist/${file}`, import.meta.url),
    new URL(`vendor/leaflet/${file}`, dist),
  );
}
