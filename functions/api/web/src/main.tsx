import { render } from "preact";
import { App } from "./app";
import { hasSession } from "./api/client";
import { prefetchPage } from "./api/prefetch";
import "./styles.css";

// With a session, the page's data is asked for now, in parallel with the app's own start (api/prefetch.ts).
if (hasSession()) prefetchPage(location.pathname, location.search);

render(<App />, document.getElementById("app")!);
