import { useEffect } from "preact/hooks";

/** Sets the document title from the page's heading. */
export function useTitle(title: string | null | undefined): void {
  useEffect(() => {
    document.title = title ? `${title} – AIMA` : "AIMA";
  }, [title]);
}
