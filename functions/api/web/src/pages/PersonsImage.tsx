// An image from an authenticated API route (crops, frames): fetched with the access token as a blob
// and shown through an object URL, revoked when the image changes or leaves the page. The CSP allows
// `img-src blob:`; the API answers sensitive images blurred unless `original` is asked for.
import type { JSX } from "preact";
import { useEffect, useState } from "preact/hooks";
import { freshToken, refresh } from "../api/client";
import { useI18n } from "../i18n";

async function fetchImage(url: string): Promise<Blob | null> {
  for (let attempt = 0; attempt < 2; attempt += 1) {
    const token = await freshToken();
    const response = await fetch(url, { headers: token ? { Authorization: `Bearer ${token}` } : {} });
    if (response.ok) return response.blob();
    if (response.status !== 401 || !(await refresh())) return null;
  }
  return null;
}

export function AuthImage(props: { src: string; alt: string; class?: string }): JSX.Element {
  const { t } = useI18n();
  const [url, setUrl] = useState<string | null>(null);
  const [failed, setFailed] = useState(false);
  useEffect(() => {
    let live = true;
    let made: string | null = null;
    setUrl(null);
    setFailed(false);
    void fetchImage(props.src)
      .catch(() => null)
      .then((blob) => {
        if (!live) return;
        if (blob === null) {
          setFailed(true);
          return;
        }
        made = URL.createObjectURL(blob);
        setUrl(made);
      });
    return () => {
      live = false;
      if (made !== null) URL.revokeObjectURL(made);
    };
  }, [props.src]);
  if (url === null)
    return (
      <span class={`image-placeholder ${props.class ?? ""}`} role="img" aria-label={props.alt}>
        {failed ? t.imageMissing : t.loading}
      </span>
    );
  return <img src={url} alt={props.alt} class={props.class} />;
}
