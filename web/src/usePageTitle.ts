import { useEffect } from "react";

/** The tab's title follows the page, so history and screen readers name it. */
export function usePageTitle(title: string | null | undefined): void {
  useEffect(() => {
    document.title = title ? `${title} · Sluice` : "Sluice";
  }, [title]);
}
